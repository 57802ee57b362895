//! A posted form's fields, and turning them into the API's JSON.

use serde_json::{Map, Value};

/// The fields of an `application/x-www-form-urlencoded` body, in order.
#[derive(Debug, Default)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    /// The first value of `key`, as sent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The first value of `key`, trimmed; `None` when missing or blank (the API then
    /// applies its default or says the field is missing).
    pub fn text(&self, key: &str) -> Option<String> {
        self.get(key).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
    }

    /// Whether a checkbox `key` was ticked.
    pub fn checked(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// A JSON object of the non-blank text fields among `keys`.
    pub fn texts(&self, keys: &[&str]) -> Map<String, Value> {
        keys.iter().filter_map(|key| self.text(key).map(|v| ((*key).to_owned(), Value::String(v)))).collect()
    }

    /// The fields as given, for drawing the form again after a refusal.
    pub fn values(&self) -> Map<String, Value> {
        let mut map = Map::new();
        for (k, v) in &self.0 {
            map.entry(k.clone()).or_insert_with(|| Value::String(v.clone()));
        }
        map
    }
}

/// A list typed one item per line or separated by commas or spaces (aliases, say).
pub fn list(text: Option<&str>) -> Vec<Value> {
    text.unwrap_or_default()
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|item| !item.is_empty())
        .map(|item| Value::String(item.to_owned()))
        .collect()
}

/// A number field as the API takes it: a JSON number, or the text as typed when it is
/// none, so the API's message says what is wrong with it.
pub fn number_or_text(text: String) -> Value {
    text.parse::<i64>().map_or(Value::String(text), Value::from)
}

/// A form as the browser would post `fields`, for tests.
#[cfg(test)]
pub fn form(fields: &[(&str, &str)]) -> FormData {
    FormData(fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_fields_are_left_out() {
        let form = FormData(vec![("title".into(), "  Shop ".into()), ("email".into(), " ".into())]);
        let json = form.texts(&["title", "email", "missing"]);
        assert_eq!(Value::Object(json), serde_json::json!({"title": "Shop"}));
        assert_eq!(list(Some("a.example.com, b.example.com\nc.example.com")).len(), 3);
    }

    #[test]
    fn numbers_go_as_numbers_and_anything_else_as_typed() {
        assert_eq!(number_or_text("3600".into()), serde_json::json!(3600));
        assert_eq!(number_or_text("hourly".into()), serde_json::json!("hourly"));
    }
}

//! Reading request input so that every refusal names the field at fault.
//!
//! Bodies are read as a JSON object and taken apart field by field ([`Fields`]), each
//! value parsed with the contract's validated types; unknown keys are refused. Query
//! strings ([`Params`]) and path segments ([`PathParam`], [`parse_segment`]) work alike.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// A request body that is a JSON object.
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {}", e.body_text())))?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON ({e}); send a JSON object"))
        })?;
        match value {
            Value::Object(map) => Ok(Self(map)),
            other => {
                Err(ApiError::bad_request(format!("the request body must be a JSON object, not {}", kind_of(&other))))
            }
        }
    }
}

/// One path segment, percent-decoded.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(segment) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("cannot read the path: {}", e.body_text())))?;
        Ok(Self(segment))
    }
}

/// Parses a path segment; a refusal names `field`.
pub fn parse_segment<T>(field: &str, value: &str) -> Result<T, ApiError>
where
    T: FromStr,
    T::Err: Display,
{
    value.parse().map_err(|e: T::Err| ApiError::invalid(field, e.to_string()))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The fields of a JSON object, taken one by one. Errors name the field by its full
/// path (`db.port`). `null` counts as absent.
pub struct Fields {
    map: Map<String, Value>,
    prefix: String,
}

impl Fields {
    /// Refuses any key not in `allowed`.
    pub fn new(map: Map<String, Value>, allowed: &[&str]) -> Result<Self, ApiError> {
        Self::nested(map, String::new(), allowed)
    }

    fn nested(map: Map<String, Value>, prefix: String, allowed: &[&str]) -> Result<Self, ApiError> {
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            let field = format!("{prefix}{unknown}");
            let known = allowed.iter().map(|k| format!("`{prefix}{k}`")).collect::<Vec<_>>().join(", ");
            return Err(ApiError::invalid(&field, format!("unknown field `{field}`; the known fields are {known}")));
        }
        Ok(Self { map, prefix })
    }

    /// The full name of `key`, for messages.
    pub fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    fn wrong_type(&self, key: &str, expected: &str, got: &Value) -> ApiError {
        let field = self.name(key);
        ApiError::invalid(&field, format!("`{field}` must be {expected}, not {}", kind_of(got)))
    }

    /// A required value: refuses its absence.
    pub fn require<T>(&self, key: &str, value: Option<T>) -> Result<T, ApiError> {
        value.ok_or_else(|| {
            let field = self.name(key);
            ApiError::invalid(&field, format!("`{field}` is missing"))
        })
    }

    pub fn string(&mut self, key: &str) -> Result<Option<String>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong_type(key, "a string", &other)),
        }
    }

    /// A string parsed with `T`'s rules; the refusal is `T`'s own message.
    pub fn parsed<T>(&mut self, key: &str) -> Result<Option<T>, ApiError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.string(key)? {
            None => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|e: T::Err| ApiError::invalid(self.name(key), e.to_string())),
        }
    }

    /// A TCP port, 1 to 65535.
    pub fn port(&mut self, key: &str) -> Result<Option<u16>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some(value) => match value.as_u64().and_then(|n| u16::try_from(n).ok()).filter(|&n| n > 0) {
                Some(port) => Ok(Some(port)),
                None => Err(self.wrong_type(key, "a port number from 1 to 65535", &value)),
            },
        }
    }

    /// A whole number.
    pub fn take_number(&mut self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some(value) => match value.as_i64() {
                Some(n) => Ok(Some(n)),
                None => Err(self.wrong_type(key, "a whole number", &value)),
            },
        }
    }

    pub fn boolean(&mut self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(other) => Err(self.wrong_type(key, "true or false", &other)),
        }
    }

    /// An array of strings, each parsed with `T`'s rules; a refusal names the field and
    /// says which item was wrong.
    pub fn parsed_list<T>(&mut self, key: &str) -> Result<Option<Vec<T>>, ApiError>
    where
        T: FromStr,
        T::Err: Display,
    {
        let items = match self.take(key) {
            None => return Ok(None),
            Some(Value::Array(items)) => items,
            Some(other) => return Err(self.wrong_type(key, "an array of strings", &other)),
        };
        let field = self.name(key);
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => s
                    .parse()
                    .map_err(|e: T::Err| ApiError::invalid(&field, format!("item {} of `{field}`: {e}", i + 1))),
                other => Err(ApiError::invalid(
                    &field,
                    format!("item {} of `{field}` must be a string, not {}", i + 1, kind_of(&other)),
                )),
            })
            .collect::<Result<Vec<T>, _>>()
            .map(Some)
    }

    /// A nested object whose own keys are limited to `allowed`.
    pub fn object(&mut self, key: &str, allowed: &[&str]) -> Result<Option<Fields>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Self::nested(map, format!("{}.", self.name(key)), allowed).map(Some),
            Some(other) => Err(self.wrong_type(key, "an object", &other)),
        }
    }
}

/// The query string of a request. Unknown and repeated keys are refused.
pub struct Params(BTreeMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("cannot read the query string: {}", e.body_text())))?;
        let mut map = BTreeMap::new();
        for (key, value) in pairs {
            if map.contains_key(&key) {
                return Err(ApiError::invalid(&key, format!("query parameter `{key}` is given twice; give it once")));
            }
            map.insert(key, value);
        }
        Ok(Self(map))
    }
}

/// `limit` and `offset` of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Page {
    pub const DEFAULT_LIMIT: i64 = 50;
    pub const MAX_LIMIT: i64 = 500;
}

impl Params {
    /// Refuses any key not in `allowed` (besides `limit` and `offset`, which
    /// [`Params::page`] reads).
    pub fn allow(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|k| !allowed.contains(&k.as_str())) {
            None => Ok(()),
            Some(unknown) => {
                let known = allowed.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
                Err(ApiError::invalid(
                    unknown,
                    format!("unknown query parameter `{unknown}`; the known ones are {known}"),
                ))
            }
        }
    }

    pub fn parsed<T>(&self, key: &str) -> Result<Option<T>, ApiError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.0.get(key).map(|v| parse_segment(key, v)).transpose()
    }

    fn number(&self, key: &str, min: i64, max: i64, default: i64) -> Result<i64, ApiError> {
        match self.0.get(key) {
            None => Ok(default),
            Some(v) => v.parse::<i64>().ok().filter(|n| (min..=max).contains(n)).ok_or_else(|| {
                ApiError::invalid(key, format!("`{key}` must be a whole number from {min} to {max}, not `{v}`"))
            }),
        }
    }

    pub fn page(&self) -> Result<Page, ApiError> {
        Ok(Page {
            limit: self.number("limit", 0, Page::MAX_LIMIT, Page::DEFAULT_LIMIT)?,
            offset: self.number("offset", 0, i64::from(i32::MAX), 0)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegir_contract::HttpServiceType;
    use serde_json::json;

    fn fields(value: Value, allowed: &[&str]) -> Result<Fields, ApiError> {
        match value {
            Value::Object(map) => Fields::new(map, allowed),
            _ => unreachable!(),
        }
    }

    fn field_of(e: ApiError) -> String {
        match e {
            ApiError::InvalidField { field, .. } => field,
            other => panic!("not a field error: {other:?}"),
        }
    }

    #[test]
    fn nested_errors_name_the_full_field() {
        let mut f = fields(json!({"http": {"service_type": "lighttpd", "port": 80}}), &["http"]).unwrap();
        let mut http = f.object("http", &["service_type", "port"]).unwrap().unwrap();
        let e = http.parsed::<HttpServiceType>("service_type").unwrap_err();
        assert!(e.to_string().contains("lighttpd"), "{e}");
        assert_eq!(field_of(e), "http.service_type");
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused() {
        let e = fields(json!({"db": {"prot": 1}}), &["db"]).unwrap().object("db", &["port"]).err().unwrap();
        assert_eq!(field_of(e), "db.prot");
        for bad in [json!("80"), json!(0), json!(70000), json!(-1), json!(1.5)] {
            let mut f = fields(json!({ "port": bad }), &["port"]).unwrap();
            assert_eq!(field_of(f.port("port").unwrap_err()), "port");
        }
        let mut f = fields(json!({"port": null}), &["port"]).unwrap();
        assert_eq!(f.port("port").unwrap(), None);
    }
}

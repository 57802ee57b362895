//! Aegir's drush alias files (`/var/aegir/.drush/<name>.alias.drushrc.php`): PHP files of
//! `$aliases['name'] = array ( 'key' => value, ... );` statements, as provision writes
//! them. This reads that subset of PHP — literals and arrays, nothing that runs — and
//! refuses anything else with the line it is on, so an import never guesses.

use std::collections::BTreeMap;

/// A PHP value as alias files hold them.
#[derive(Debug, Clone, PartialEq)]
pub enum PhpValue {
    Str(String),
    Int(i64),
    Bool(bool),
    Null,
    /// Keyed and listed entries in file order; a listed entry gets the next integer key.
    Array(Vec<(String, PhpValue)>),
}

impl PhpValue {
    /// The value as text, the way PHP would print a scalar (`true` is "1").
    pub fn text(&self) -> Option<String> {
        match self {
            PhpValue::Str(s) => Some(s.clone()),
            PhpValue::Int(i) => Some(i.to_string()),
            PhpValue::Bool(true) => Some("1".into()),
            PhpValue::Bool(false) | PhpValue::Null => Some(String::new()),
            PhpValue::Array(_) => None,
        }
    }

    /// PHP's truthiness for a scalar: `true`, non-zero, and strings other than "" and "0".
    pub fn truthy(&self) -> bool {
        match self {
            PhpValue::Str(s) => !s.is_empty() && s != "0",
            PhpValue::Int(i) => *i != 0,
            PhpValue::Bool(b) => *b,
            PhpValue::Null => false,
            PhpValue::Array(entries) => !entries.is_empty(),
        }
    }
}

/// One alias: its name (`server_master`, `platform_d7`, `example.com`) and its keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Alias {
    pub name: String,
    pub fields: BTreeMap<String, PhpValue>,
}

impl Alias {
    pub fn get(&self, key: &str) -> Option<&PhpValue> {
        self.fields.get(key)
    }

    /// A scalar field as text; absent, null and "" are `None`.
    pub fn text(&self, key: &str) -> Option<String> {
        self.get(key).and_then(PhpValue::text).filter(|s| !s.is_empty())
    }
}

/// Why a file could not be read, with its line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// The aliases a file defines, in order.
pub fn parse(text: &str) -> Result<Vec<Alias>, ParseError> {
    let mut p = Parser { chars: text.chars().collect(), pos: 0 };
    p.skip_space();
    p.eat_word("<?php");
    let mut aliases = Vec::new();
    loop {
        p.skip_space();
        if p.at_end() || p.eat_word("?>") {
            return Ok(aliases);
        }
        aliases.push(p.statement()?);
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn line(&self) -> usize {
        1 + self.chars[..self.pos.min(self.chars.len())].iter().filter(|c| **c == '\n').count()
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError { line: self.line(), message: message.into() })
    }

    /// Skips whitespace and `//`, `#` and `/* */` comments.
    fn skip_space(&mut self) {
        loop {
            while self.peek().is_some_and(char::is_whitespace) {
                self.pos += 1;
            }
            let rest: String = self.chars[self.pos..].iter().take(2).collect();
            if rest.starts_with("//") || rest.starts_with('#') {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.pos += 1;
                }
            } else if rest == "/*" {
                self.pos += 2;
                while !self.at_end() && !self.chars[self.pos..].starts_with(&['*', '/']) {
                    self.pos += 1;
                }
                self.pos = (self.pos + 2).min(self.chars.len());
            } else {
                return;
            }
        }
    }

    /// Consumes `word` (case-insensitively) when it comes next.
    fn eat_word(&mut self, word: &str) -> bool {
        let len = word.chars().count();
        let next: String = self.chars[self.pos..].iter().take(len).collect();
        if next.eq_ignore_ascii_case(word) {
            self.pos += len;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), ParseError> {
        self.skip_space();
        if self.eat_word(token) { Ok(()) } else { self.error(format!("expected `{token}`")) }
    }

    /// `$aliases['name'] = VALUE;`
    fn statement(&mut self) -> Result<Alias, ParseError> {
        if !self.eat_word("$aliases") {
            return self.error("only `$aliases['name'] = array (...);` statements are read from alias files");
        }
        self.expect("[")?;
        self.skip_space();
        let name = match self.value()? {
            PhpValue::Str(s) => s,
            _ => return self.error("an alias name is a quoted string"),
        };
        self.expect("]")?;
        self.expect("=")?;
        self.skip_space();
        let PhpValue::Array(entries) = self.value()? else {
            return self.error(format!("alias `{name}` is not an array"));
        };
        self.expect(";")?;
        Ok(Alias { name, fields: entries.into_iter().collect() })
    }

    fn value(&mut self) -> Result<PhpValue, ParseError> {
        self.skip_space();
        match self.peek() {
            Some('\'') => self.single_quoted().map(PhpValue::Str),
            Some('"') => self.double_quoted().map(PhpValue::Str),
            Some('[') => {
                self.pos += 1;
                self.entries(']')
            }
            Some(c) if c == '-' || c.is_ascii_digit() => self.number(),
            _ => {
                if self.eat_word("array") {
                    self.expect("(")?;
                    return self.entries(')');
                }
                for (word, value) in
                    [("true", PhpValue::Bool(true)), ("false", PhpValue::Bool(false)), ("null", PhpValue::Null)]
                {
                    if self.eat_word(word) && !self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                        return Ok(value);
                    }
                }
                self.error("expected a string, number, true, false, null or array")
            }
        }
    }

    /// Entries up to `close`: `key => value` or `value`, comma separated.
    fn entries(&mut self, close: char) -> Result<PhpValue, ParseError> {
        let mut entries = Vec::new();
        let mut next_index: i64 = 0;
        loop {
            self.skip_space();
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(PhpValue::Array(entries));
            }
            let first = self.value()?;
            self.skip_space();
            let (key, value) = if self.eat_word("=>") {
                let key = match &first {
                    PhpValue::Str(s) => s.clone(),
                    PhpValue::Int(i) => {
                        next_index = next_index.max(i + 1);
                        i.to_string()
                    }
                    _ => return self.error("an array key is a string or an integer"),
                };
                (key, self.value()?)
            } else {
                next_index += 1;
                ((next_index - 1).to_string(), first)
            };
            entries.push((key, value));
            self.skip_space();
            if !self.eat_word(",") && self.peek() != Some(close) {
                return self.error(format!("expected `,` or `{close}`"));
            }
        }
    }

    fn single_quoted(&mut self) -> Result<String, ParseError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return self.error("a string is not closed"),
                Some('\'') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('\\') if matches!(self.chars.get(self.pos + 1), Some('\'' | '\\')) => {
                    out.push(self.chars[self.pos + 1]);
                    self.pos += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// A double-quoted string without variables (provision never writes them).
    fn double_quoted(&mut self) -> Result<String, ParseError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return self.error("a string is not closed"),
                Some('"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('$') => return self.error("a double-quoted string with a `$` (PHP would expand it)"),
                Some('\\') => {
                    let escaped = match self.chars.get(self.pos + 1) {
                        Some('n') => Some('\n'),
                        Some('t') => Some('\t'),
                        Some('r') => Some('\r'),
                        Some(c @ ('"' | '\\' | '$')) => Some(*c),
                        _ => None,
                    };
                    // PHP keeps an unknown escape as it is, backslash included.
                    out.push(escaped.unwrap_or('\\'));
                    self.pos += if escaped.is_some() { 2 } else { 1 };
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn number(&mut self) -> Result<PhpValue, ParseError> {
        let start = self.pos;
        if self.peek() == Some('-') {
            self.pos += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        match text.parse() {
            Ok(n) => Ok(PhpValue::Int(n)),
            Err(_) => self.error(format!("`{text}` is not a whole number")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_alias_as_provision_writes_it_is_read() {
        let text = "<?php \n$aliases['example.com'] = array (\n  'context_type' => 'site',\n  \
            'platform' => '@platform_d7',\n  'uri' => 'example.com',\n  'site_enabled' => true,\n  \
            'aliases' => \n  array (\n    0 => 'www.example.com',\n    1 => 'shop.example.com',\n  ),\n  \
            'redirection' => false,\n  'http_port' => 80,\n  'client_name' => 'O\\'Brien',\n  # a comment\n  \
            'cron_key' => NULL,\n);\n";
        let aliases = parse(text).unwrap();
        assert_eq!(aliases.len(), 1);
        let site = &aliases[0];
        assert_eq!(site.name, "example.com");
        assert_eq!(site.text("platform").as_deref(), Some("@platform_d7"));
        assert_eq!(site.get("site_enabled"), Some(&PhpValue::Bool(true)));
        assert_eq!(site.text("http_port").as_deref(), Some("80"));
        assert_eq!(site.text("client_name").as_deref(), Some("O'Brien"));
        assert_eq!(site.text("cron_key"), None);
        let Some(PhpValue::Array(list)) = site.get("aliases") else { panic!("aliases") };
        let names: Vec<_> = list.iter().map(|(_, v)| v.text().unwrap()).collect();
        assert_eq!(names, ["www.example.com", "shop.example.com"]);
    }

    #[test]
    fn short_arrays_lists_and_several_statements_are_read() {
        let text = "<?php\n/* made by provision */\n$aliases['a'] = ['x' => [1, 2,], 'y' => \"q\\\"z\"];\n\
            $aliases[\"b\"] = array();\n";
        let aliases = parse(text).unwrap();
        assert_eq!(aliases.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            aliases[0].get("x"),
            Some(&PhpValue::Array(vec![("0".into(), PhpValue::Int(1)), ("1".into(), PhpValue::Int(2))]))
        );
        assert_eq!(aliases[0].text("y").as_deref(), Some("q\"z"));
    }

    #[test]
    fn code_that_would_run_is_refused_with_its_line() {
        for (text, line) in [
            ("<?php\n$aliases['a'] = array('x' => exec('id'));", 2),
            ("<?php\n\n$options['a'] = 1;", 3),
            ("<?php\n$aliases['a'] = array('x' => \"$HOME\");", 2),
            ("<?php\n$aliases['a'] = array('x' => 'open", 2),
        ] {
            let error = parse(text).unwrap_err();
            assert_eq!(error.line, line, "{text}: {error}");
        }
    }
}

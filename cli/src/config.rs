//! Where the API is: `--api URL`, else `AEGIR_API`, else the first config file found
//! among `$AEGIR_CONFIG`, `$XDG_CONFIG_HOME/aegir/cli.toml` (or
//! `~/.config/aegir/cli.toml`) and `/etc/aegir/cli.toml`, else the default.
//!
//! A config file is TOML: `api = "http://127.0.0.1:8090"`, and `token = "aegir_..."`
//! (written by `aegir login`; see [`token`] for the other places a token comes from).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use crate::error::CliError;

pub const DEFAULT_API: &str = "http://127.0.0.1:8090";
const SYSTEM_CONFIG: &str = "/etc/aegir/cli.toml";

/// Where the API address came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag,
    Env,
    File(PathBuf),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag => f.write_str("from --api"),
            Origin::Env => f.write_str("from AEGIR_API"),
            Origin::File(path) => write!(f, "from {}", path.display()),
            Origin::Default => f.write_str("the default; nothing set --api, AEGIR_API or a config file"),
        }
    }
}

impl Origin {
    /// The name of the setting, as an error's field.
    fn field(&self) -> String {
        match self {
            Origin::Flag => "--api".into(),
            Origin::Env => "AEGIR_API".into(),
            Origin::File(path) => format!("{}: api", path.display()),
            Origin::Default => "api".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiAddress {
    pub url: Url,
    pub origin: Origin,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    api: Option<String>,
    /// The API token `aegir login` stores.
    token: Option<String>,
}

/// Resolves the API address. `env` reads an environment variable (a parameter so tests
/// need not change the process environment).
pub fn resolve(flag: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Result<ApiAddress, CliError> {
    let (raw, origin) = if let Some(url) = flag {
        (url.to_owned(), Origin::Flag)
    } else if let Some(url) = env("AEGIR_API").filter(|v| !v.is_empty()) {
        (url, Origin::Env)
    } else if let Some((path, url)) = from_config_file(&env)? {
        (url, Origin::File(path))
    } else {
        (DEFAULT_API.to_owned(), Origin::Default)
    };
    let url = parse_api_url(&raw).map_err(|message| CliError::usage(origin.field(), message))?;
    Ok(ApiAddress { url, origin })
}

/// The config files to look at, in order.
pub fn candidates(env: &impl Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(explicit) = env("AEGIR_CONFIG").filter(|v| !v.is_empty()) {
        paths.push(PathBuf::from(explicit));
    }
    // The XDG rule: XDG_CONFIG_HOME when set to an absolute path, else ~/.config.
    let xdg = env("XDG_CONFIG_HOME").map(PathBuf::from).filter(|p| p.is_absolute());
    let user_dir = xdg.or_else(|| env("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".config")));
    if let Some(dir) = user_dir {
        paths.push(dir.join("aegir").join("cli.toml"));
    }
    paths.push(PathBuf::from(SYSTEM_CONFIG));
    paths
}

fn from_config_file(env: &impl Fn(&str) -> Option<String>) -> Result<Option<(PathBuf, String)>, CliError> {
    if let Some(explicit) = env("AEGIR_CONFIG").filter(|v| !v.is_empty())
        && !Path::new(&explicit).is_file()
    {
        // Named on purpose, so a missing file is a mistake, not a reason to look elsewhere.
        return Err(CliError::usage("AEGIR_CONFIG", format!("`{explicit}` is not a readable file")));
    }
    for path in candidates(env) {
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| CliError::usage(path.display().to_string(), format!("cannot read it: {e}")))?;
        let file: ConfigFile = toml::from_str(&text).map_err(|e| {
            CliError::usage(
                path.display().to_string(),
                format!("not a valid aegir CLI config (expected `api = \"http://HOST:PORT\"`): {}", e.message()),
            )
        })?;
        if let Some(api) = file.api {
            return Ok(Some((path, api)));
        }
    }
    Ok(None)
}

/// The API token: `AEGIR_TOKEN`, else the file `AEGIR_TOKEN_FILE` names, else `token`
/// in the first config file that has one; `None` when nothing sets one.
pub fn token(env: impl Fn(&str) -> Option<String>) -> Result<Option<String>, CliError> {
    if let Some(token) = env("AEGIR_TOKEN").filter(|v| !v.trim().is_empty()) {
        return Ok(Some(token.trim().to_owned()));
    }
    if let Some(file) = env("AEGIR_TOKEN_FILE").filter(|v| !v.is_empty()) {
        let text = std::fs::read_to_string(&file).map_err(|e| {
            CliError::usage(
                "AEGIR_TOKEN_FILE",
                format!("cannot read `{file}`: {e}; check the path and its permissions"),
            )
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(CliError::usage("AEGIR_TOKEN_FILE", format!("`{file}` is empty; it should hold an API token")));
        }
        return Ok(Some(token.to_owned()));
    }
    for path in candidates(&env) {
        if !path.is_file() {
            continue;
        }
        // An unreadable system config (mode 0600, another user's) holds no token for this user.
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let file: ConfigFile = toml::from_str(&text).map_err(|e| {
            CliError::usage(path.display().to_string(), format!("not a valid aegir CLI config: {}", e.message()))
        })?;
        if let Some(token) = file.token.filter(|t| !t.trim().is_empty()) {
            return Ok(Some(token.trim().to_owned()));
        }
    }
    Ok(None)
}

/// The config file `aegir login` writes: `$AEGIR_CONFIG`, else the user's own.
pub fn user_config(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(explicit) = env("AEGIR_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(explicit));
    }
    candidates(&env).into_iter().find(|p| p.as_path() != Path::new(SYSTEM_CONFIG))
}

/// Writes `token` into the config file at `path` (keeping its `api`), readable by its
/// owner only.
pub fn store_token(path: &Path, token: &str) -> Result<(), CliError> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};

    let field = || path.display().to_string();
    if !token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(CliError::usage("token", "the API answered a token of unexpected characters; not storing it"));
    }
    let old = match std::fs::read_to_string(path) {
        Ok(text) => {
            toml::from_str::<ConfigFile>(&text)
                .map_err(|e| CliError::usage(field(), format!("not a valid aegir CLI config: {}", e.message())))?;
            text
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(CliError::usage(field(), format!("cannot read it: {e}"))),
    };
    // The file holds `api` and `token` only (the reader refuses anything else), so the
    // old token line is replaced and every other line kept.
    let mut text: String =
        old.lines().filter(|l| !l.trim_start().starts_with("token")).map(|l| format!("{l}\n")).collect();
    text.push_str(&format!("token = \"{token}\"\n"));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::usage(field(), format!("cannot create its directory: {e}")))?;
    }
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
        // An existing file keeps its mode on open; the token makes it the owner's alone.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(text.as_bytes())
    };
    write().map_err(|e| CliError::usage(field(), format!("cannot write it: {e}")))
}

fn parse_api_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("`{raw}` is not a URL ({e}); use e.g. {DEFAULT_API}"))?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(format!(
                "`{raw}`: this build of aegir speaks plain http only; reach task-api at an http:// address \
                 (e.g. through an SSH tunnel)"
            ));
        }
        other => return Err(format!("`{raw}`: scheme `{other}` is not supported; use e.g. {DEFAULT_API}")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{raw}` has no host; use e.g. {DEFAULT_API}"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{raw}`: leave out the query and fragment; use e.g. {DEFAULT_API}"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn flag_beats_env_beats_file() {
        let home = tempfile::tempdir().unwrap();
        write(home.path(), ".config/aegir/cli.toml", "api = \"http://file:1\"\n");
        let home_s = home.path().to_str().unwrap();

        let env = env_of(&[("HOME", home_s), ("AEGIR_API", "http://env:2")]);
        let a = resolve(Some("http://flag:3"), &env).unwrap();
        assert_eq!((a.url.as_str(), a.origin), ("http://flag:3/", Origin::Flag));

        let a = resolve(None, &env).unwrap();
        assert_eq!((a.url.as_str(), a.origin), ("http://env:2/", Origin::Env));

        let env = env_of(&[("HOME", home_s)]);
        let a = resolve(None, &env).unwrap();
        assert_eq!(a.url.as_str(), "http://file:1/");
        assert_eq!(a.origin, Origin::File(home.path().join(".config/aegir/cli.toml")));
    }

    #[test]
    fn lookup_order_is_aegir_config_then_xdg_then_home_then_etc() {
        let env = env_of(&[("AEGIR_CONFIG", "/x/a.toml"), ("XDG_CONFIG_HOME", "/xdg"), ("HOME", "/home/u")]);
        assert_eq!(
            candidates(&env),
            [PathBuf::from("/x/a.toml"), PathBuf::from("/xdg/aegir/cli.toml"), PathBuf::from(SYSTEM_CONFIG)]
        );
        let env = env_of(&[("HOME", "/home/u"), ("XDG_CONFIG_HOME", "relative/dir")]);
        assert_eq!(candidates(&env), [PathBuf::from("/home/u/.config/aegir/cli.toml"), PathBuf::from(SYSTEM_CONFIG)]);
    }

    #[test]
    fn the_first_file_found_wins() {
        let dir = tempfile::tempdir().unwrap();
        let explicit = write(dir.path(), "explicit.toml", "api = \"http://explicit:1\"\n");
        write(dir.path(), "xdg/aegir/cli.toml", "api = \"http://xdg:2\"\n");
        let xdg = dir.path().join("xdg");

        let env = env_of(&[("AEGIR_CONFIG", explicit.to_str().unwrap()), ("XDG_CONFIG_HOME", xdg.to_str().unwrap())]);
        assert_eq!(resolve(None, &env).unwrap().url.as_str(), "http://explicit:1/");

        let env = env_of(&[("XDG_CONFIG_HOME", xdg.to_str().unwrap())]);
        assert_eq!(resolve(None, &env).unwrap().url.as_str(), "http://xdg:2/");
    }

    #[test]
    fn a_missing_explicit_config_is_an_error() {
        let env = env_of(&[("AEGIR_CONFIG", "/nonexistent/aegir.toml")]);
        let e = resolve(None, &env).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().starts_with("AEGIR_CONFIG: `/nonexistent/aegir.toml`"), "{e}");
    }

    #[test]
    fn a_broken_config_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "cli.toml", "apu = \"http://x\"\n");
        let env = env_of(&[("AEGIR_CONFIG", path.to_str().unwrap())]);
        let e = resolve(None, &env).unwrap_err().to_string();
        assert!(e.contains(path.to_str().unwrap()) && e.contains("apu"), "{e}");
    }

    #[test]
    fn the_token_comes_from_env_then_file_then_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = write(dir.path(), "cli.toml", "api = \"http://h:1\"\n");
        store_token(&config, "aegir_from_config").unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&config).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(text.contains("api = \"http://h:1\"") && text.contains("token = \"aegir_from_config\""), "{text}");
        let file = write(dir.path(), "token", "aegir_from_file\n");
        let (c, f) = (config.to_str().unwrap(), file.to_str().unwrap());

        let env = env_of(&[("AEGIR_CONFIG", c), ("AEGIR_TOKEN_FILE", f), ("AEGIR_TOKEN", "aegir_from_env")]);
        assert_eq!(token(&env).unwrap().as_deref(), Some("aegir_from_env"));
        let env = env_of(&[("AEGIR_CONFIG", c), ("AEGIR_TOKEN_FILE", f)]);
        assert_eq!(token(&env).unwrap().as_deref(), Some("aegir_from_file"));
        let env = env_of(&[("AEGIR_CONFIG", c)]);
        assert_eq!(token(&env).unwrap().as_deref(), Some("aegir_from_config"));
        assert_eq!(resolve(None, &env).unwrap().url.as_str(), "http://h:1/");
        let env = env_of(&[("AEGIR_TOKEN_FILE", "/nonexistent/token")]);
        assert!(token(&env).unwrap_err().to_string().starts_with("AEGIR_TOKEN_FILE: "));
    }

    #[test]
    fn default_when_nothing_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_of(&[("HOME", dir.path().to_str().unwrap())]);
        let a = resolve(None, &env).unwrap();
        // /etc/aegir/cli.toml may exist on a machine running Aegir; then it wins.
        if !Path::new(SYSTEM_CONFIG).exists() {
            assert_eq!((a.url.as_str(), a.origin), ("http://127.0.0.1:8090/", Origin::Default));
        }
    }

    #[test]
    fn bad_addresses_are_refused_with_the_setting_named() {
        for (raw, needle) in [
            ("localhost:8090", "not supported"),
            ("127.0.0.1:8090", "not a URL"),
            ("https://h", "plain http"),
            ("ftp://h", "ftp"),
            ("nonsense", "not a URL"),
        ] {
            let e = resolve(Some(raw), env_of(&[])).unwrap_err().to_string();
            assert!(e.starts_with("--api: ") && e.contains(needle), "{raw}: {e}");
        }
        let e = resolve(None, env_of(&[("AEGIR_API", "nonsense")])).unwrap_err().to_string();
        assert!(e.starts_with("AEGIR_API: "), "{e}");
    }
}

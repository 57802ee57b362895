//! Reading a code base: which application it is, and the packages it holds.

use std::path::{Path, PathBuf};

use aegir_contract::{Package, PackageKind, PlatformType};
use regex::Regex;

/// The detected type and, where the code base says it, the application's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub platform_type: PlatformType,
    pub version: Option<String>,
}

pub fn read(root: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(root.join(file)).ok()
}

pub fn capture(text: &str, pattern: &str) -> Option<String> {
    Regex::new(pattern).ok()?.captures(text)?.get(1).map(|m| m.as_str().trim().to_owned())
}

/// The directories of `<root>/sites/` that are sites (named like host names).
pub fn site_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root.join("sites")) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n != "all"))
        .collect()
}

/// The sub-directories of `dir`, sorted.
pub fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs
}

/// Files under `dir` whose names end with `suffix`, at most `depth` levels down,
/// not following symlinked directories out of the tree.
pub fn find_files(dir: &Path, suffix: &str, depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((path, level)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else { continue };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            let p = entry.path();
            if kind.is_dir() && level < depth {
                stack.push((p, level + 1));
            } else if kind.is_file() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(suffix)) {
                found.push(p);
            }
        }
    }
    found.sort();
    found
}

pub fn package(name: impl Into<String>, kind: PackageKind, version: Option<String>) -> Package {
    Package { name: name.into(), kind, version: version.filter(|v| !v.is_empty()) }
}

/// Looks at `root` and names the application, most specific first.
pub fn detect(root: &Path) -> Option<Detected> {
    if let Some(text) = read(root, "core/lib/Drupal.php") {
        let version = capture(&text, r#"const VERSION = '([^']+)'"#);
        return Some(Detected { platform_type: PlatformType::Drupal, version });
    }
    if let Some(text) = read(root, "includes/bootstrap.inc")
        && let Some(version) = capture(&text, r#"define\('VERSION', '(7\.[^']*)'\)"#)
    {
        return Some(Detected { platform_type: PlatformType::Drupal7, version: Some(version) });
    }
    if let Some(text) = read(root, "wp-includes/version.php") {
        let version = capture(&text, r#"\$wp_version = '([^']+)'"#);
        return Some(Detected { platform_type: PlatformType::Wordpress, version });
    }
    if root.join("maintenance/install.php").is_file() && root.join("includes").is_dir() {
        return Some(Detected { platform_type: PlatformType::Mediawiki, version: mediawiki_version(root) });
    }
    if root.join("index.php").is_file() {
        return Some(Detected { platform_type: PlatformType::Php, version: None });
    }
    None
}

pub fn mediawiki_version(root: &Path) -> Option<String> {
    read(root, "includes/Defines.php")
        .and_then(|t| capture(&t, r#"define\( ?'MW_VERSION', '([^']+)' ?\)"#))
        .or_else(|| read(root, "includes/DefaultSettings.php").and_then(|t| capture(&t, r#"\$wgVersion = '([^']+)'"#)))
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::platforms::tree;

    #[test]
    fn each_application_is_recognised() {
        let d10 = tree(&[("core/lib/Drupal.php", "class Drupal {\n  const VERSION = '10.3.1';\n")]);
        assert_eq!(
            detect(d10.path()),
            Some(Detected { platform_type: PlatformType::Drupal, version: Some("10.3.1".into()) })
        );
        let d7 = tree(&[("includes/bootstrap.inc", "<?php\ndefine('VERSION', '7.101');\n"), ("index.php", "")]);
        assert_eq!(detect(d7.path()).unwrap().platform_type, PlatformType::Drupal7);
        assert_eq!(detect(d7.path()).unwrap().version.as_deref(), Some("7.101"));
        let wp = tree(&[("wp-includes/version.php", "<?php\n$wp_version = '6.1.1';\n"), ("index.php", "")]);
        assert_eq!(detect(wp.path()).unwrap().version.as_deref(), Some("6.1.1"));
        let mw = tree(&[
            ("maintenance/install.php", "<?php"),
            ("includes/Defines.php", "define( 'MW_VERSION', '1.39.10' );"),
            ("index.php", ""),
        ]);
        assert_eq!(
            detect(mw.path()),
            Some(Detected { platform_type: PlatformType::Mediawiki, version: Some("1.39.10".into()) })
        );
        let php = tree(&[("index.php", "<?php echo 'hi';")]);
        assert_eq!(detect(php.path()).unwrap().platform_type, PlatformType::Php);
        let empty = tree(&[("README", "")]);
        assert_eq!(detect(empty.path()), None);
    }
}

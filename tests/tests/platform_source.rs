//! Platforms built from a source, end to end: a git repository (at a tag, a commit or its
//! default branch) or a `.tar.gz` in the backup store is put at the platform's root by
//! the web server's backup-worker, then verified as usual. The same source on two
//! platforms gives the same code; a bad source fails the task with the reason in its log
//! and leaves nothing at the root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use aegir_e2e::{System, random_suffix, write_tree};
use serde_json::{Value, json};

/// Runs git in `dir` with a fixed identity; returns its stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Aegir Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A repository of a small PHP application: `v1` (tagged), then `v2` on `main`.
/// Returns its directory and the commit id of `v1`.
fn php_app_repository(dir: &Path) -> (PathBuf, String) {
    let repo = dir.join("app.git-work");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    write_tree(
        &repo,
        &[
            ("index.php", "<?php require __DIR__ . '/lib/version.php'; echo 'app ' . APP_VERSION;\n"),
            ("lib/version.php", "<?php const APP_VERSION = '1';\n"),
            ("README.txt", "A small application.\n"),
        ],
    );
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "v1"]);
    git(&repo, &["tag", "v1"]);
    let v1 = git(&repo, &["rev-parse", "HEAD"]);
    write_tree(&repo, &[("lib/version.php", "<?php const APP_VERSION = '2';\n")]);
    git(&repo, &["commit", "-q", "-am", "v2"]);
    (repo, v1)
}

/// Every file below `root` (relative path → contents), without `.git`.
fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).unwrap().display().to_string();
                out.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// What a build left beside the roots: nothing but the roots and their markers.
fn build_leftovers(platforms: &Path) -> Vec<String> {
    std::fs::read_dir(platforms)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".build-"))
        .collect()
}

async fn put_platform(system: &System, name: &str, body: Value) -> (u16, Value) {
    let response = system
        .http
        .put(format!("{}/api/v1/platforms/{name}", system.api))
        .json(&body)
        .send()
        .await
        .expect("API reachable");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Runs `verify` on the platform; returns the finished task's view and its log lines.
async fn verify(system: &System, platform: &str) -> (Value, Vec<String>) {
    let id = system.post_task(&format!("@{platform}"), "verify").await;
    let view = system.wait_task(&id).await;
    let log =
        system.task_log(&id).await.into_iter().map(|(_, source, message)| format!("{source}: {message}")).collect();
    (view, log)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_git_source_gives_the_same_code_on_two_platforms() {
    let system = System::start().await;
    system.server_ready().await;
    let work = tempfile::tempdir().unwrap();
    let (repo, v1) = php_app_repository(work.path());
    let url = repo.display().to_string();
    let web = format!("--web_server=@{}", system.server);
    let suffix = random_suffix();

    // The same source, saved as two platforms through the CLI, each verified.
    let mut roots = Vec::new();
    for name in ["a", "b"] {
        let platform = format!("@platform_{name}_{suffix}");
        let root = system.platforms_dir().join(format!("{name}-{suffix}"));
        let root_arg = format!("--root={}", root.display());
        let source = format!("--source_git={url}");
        system
            .cli_ok(&["save", &platform, "--context_type=platform", &root_arg, &web, &source, "--source_ref=v1"])
            .await;
        let out = system.cli_ok(&[&platform, "verify"]).await;
        assert!(out.contains("platform build"), "the build runs before the verify: {out}");
        roots.push(root);
    }
    let a = files(&roots[0]);
    assert_eq!(a, files(&roots[1]), "the same source gives the same code");
    assert_eq!(a.keys().collect::<Vec<_>>(), ["README.txt", "index.php", "lib/version.php"]);
    assert_eq!(a["lib/version.php"], b"<?php const APP_VERSION = '1';\n", "the tag's code, not the branch's");
    assert!(!roots[0].join(".git").exists(), "the platform holds the code, not the repository");
    assert!(build_leftovers(&system.platforms_dir()).is_empty());

    // The API shows the source, and what verify found there.
    let (status, view) = system.get(&format!("/api/v1/platforms/platform_a_{suffix}")).await;
    assert_eq!(status, 200);
    assert_eq!(view["status"], "verified", "{view}");
    assert_eq!(view["platform_type"], "php", "{view}");
    assert_eq!(view["source"], json!({"kind": "git", "url": url, "ref": "v1"}));
    let shown = system.cli_ok(&["show", &format!("@platform_a_{suffix}")]).await;
    assert!(shown.contains(&format!("git {url} at v1")), "{shown}");

    // A commit id is checked out as such; no ref is the default branch.
    for (name, git_ref, version) in [("c", Some(v1.as_str()), "1"), ("d", None, "2")] {
        let root = system.platforms_dir().join(format!("{name}-{suffix}"));
        let mut source = json!({"kind": "git", "url": url});
        if let Some(r) = git_ref {
            source["ref"] = json!(r);
        }
        let body =
            json!({"root": root.display().to_string(), "web_server": format!("@{}", system.server), "source": source});
        let (status, saved) = put_platform(&system, &format!("platform_{name}_{suffix}"), body).await;
        assert_eq!(status, 201, "{saved}");
        let (view, log) = verify(&system, &format!("platform_{name}_{suffix}")).await;
        assert_eq!(view["status"], "success", "{view} {log:#?}");
        assert!(log.iter().any(|l| l.contains("checked out commit")), "{log:#?}");
        let version_file = std::fs::read_to_string(root.join("lib/version.php")).unwrap();
        assert_eq!(version_file, format!("<?php const APP_VERSION = '{version}';\n"));
    }

    // A platform already at its root is not built again: what is there stays.
    std::fs::write(roots[0].join("local.txt"), "kept").unwrap();
    let (view, log) = verify(&system, &format!("platform_a_{suffix}")).await;
    assert_eq!(view["status"], "success", "{view} {log:#?}");
    assert!(log.iter().any(|l| l.contains("already exists")), "{log:#?}");
    assert_eq!(std::fs::read_to_string(roots[0].join("local.txt")).unwrap(), "kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_source_fails_with_its_reason_and_leaves_nothing_at_the_root() {
    let system = System::start().await;
    system.server_ready().await;
    let suffix = random_suffix();
    let server = format!("@{}", system.server);

    // A repository that does not exist.
    let root = system.platforms_dir().join(format!("missing-{suffix}"));
    let url = format!("/srv/nothing-here-{suffix}.git");
    let body = json!({"root": root.display().to_string(), "web_server": server, "source": {"kind": "git", "url": url}});
    let (status, saved) = put_platform(&system, &format!("platform_missing_{suffix}"), body).await;
    assert_eq!(status, 201, "{saved}");
    let (view, log) = verify(&system, &format!("platform_missing_{suffix}")).await;
    assert_eq!(view["status"], "failed", "{view}");
    let reason = view["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("git clone failed"), "{reason}");
    assert!(log.iter().any(|l| l.contains(&url) && l.contains("fatal:")), "git's own words are in the log: {log:#?}");
    assert!(!root.exists(), "nothing is left at the root");
    assert!(build_leftovers(&system.platforms_dir()).is_empty());
    let (_, view) = system.get(&format!("/api/v1/platforms/platform_missing_{suffix}")).await;
    assert_ne!(view["status"], "verified", "{view}");

    // A repository whose code verify does not recognise: the build is undone.
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("not-an-app");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    write_tree(&repo, &[("notes.txt", "no application here\n")]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "notes"]);
    let root = system.platforms_dir().join(format!("notes-{suffix}"));
    let source = json!({"kind": "git", "url": format!("file://{}", repo.display())});
    let body = json!({"root": root.display().to_string(), "web_server": server, "source": source});
    let (status, saved) = put_platform(&system, &format!("platform_notes_{suffix}"), body).await;
    assert_eq!(status, 201, "{saved}");
    let (view, log) = verify(&system, &format!("platform_notes_{suffix}")).await;
    assert_eq!(view["status"], "failed", "{view}");
    assert!(log.iter().any(|l| l.contains("which this task had built")), "the undo removed the build: {log:#?}");
    assert!(!root.exists(), "the undone build left nothing at the root");

    // Bad input is refused before anything runs, without repeating a password.
    let root = system.platforms_dir().join(format!("bad-{suffix}"));
    for (source, field) in [
        (json!({"kind": "git", "url": "--upload-pack=touch /tmp/pwned"}), "source.url"),
        (json!({"kind": "git", "url": "/srv/app.git", "ref": "--output=/tmp/x"}), "source.ref"),
        (json!({"kind": "git", "url": "https://deploy:hunter2-pw@git.example.com/app.git"}), "source.url"),
        (json!({"kind": "archive", "key": "../../etc/x.tar.gz"}), "source.key"),
    ] {
        let body = json!({"root": root.display().to_string(), "web_server": server, "source": source});
        let (status, error) = put_platform(&system, &format!("platform_bad_{suffix}"), body).await;
        assert_eq!(status, 422, "{error}");
        assert_eq!(error["error"]["field"], field, "{error}");
        assert!(!error.to_string().contains("hunter2-pw"), "{error}");
    }
    let (status, _) = system.get(&format!("/api/v1/platforms/platform_bad_{suffix}")).await;
    assert_eq!(status, 404, "nothing was saved");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archive_in_the_backup_store_is_unpacked_at_the_root() {
    let system = System::start().await;
    system.server_ready().await;
    let suffix = random_suffix();
    let server = format!("@{}", system.server);

    // A release tarball: everything in one top directory.
    let work = tempfile::tempdir().unwrap();
    write_tree(
        &work.path().join("app-1.0"),
        &[("index.php", "<?php echo 'from the archive';\n"), ("includes/lib.php", "<?php\n")],
    );
    let key = format!("platforms/app-{suffix}.tar.gz");
    let archive = system.backup_store_dir().join(&key);
    std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(work.path())
        .arg("app-1.0")
        .status()
        .expect("tar runs");
    assert!(status.success());

    // What a build killed half way left beside a root: it never reached the root, and the
    // next build removes it.
    let killed = system.platforms_dir().join(format!(".x-{suffix}.build-01000000-0000-7000-8000-000000000000"));
    write_tree(&killed, &[("index.php", "<?php // half\n")]);

    let mut roots = Vec::new();
    for name in ["x", "y"] {
        let platform = format!("@platform_{name}_{suffix}");
        let root = system.platforms_dir().join(format!("{name}-{suffix}"));
        let root_arg = format!("--root={}", root.display());
        let source = format!("--source_archive={key}");
        let web = format!("--web_server={server}");
        system.cli_ok(&["save", &platform, "--context_type=platform", &root_arg, &web, &source]).await;
        let out = system.cli_ok(&[&platform, "verify"]).await;
        if name == "x" {
            assert!(out.contains("left by an interrupted build"), "{out}");
        }
        roots.push(root);
    }
    let x = files(&roots[0]);
    assert_eq!(x.keys().collect::<Vec<_>>(), ["includes/lib.php", "index.php"], "the top directory became the root");
    assert_eq!(x["index.php"], b"<?php echo 'from the archive';\n");
    assert_eq!(x, files(&roots[1]));
    assert!(!killed.exists(), "the interrupted build's directory is gone");
    let (_, view) = system.get(&format!("/api/v1/platforms/platform_x_{suffix}")).await;
    assert_eq!((view["status"].as_str(), view["platform_type"].as_str()), (Some("verified"), Some("php")), "{view}");
    assert_eq!(view["source"], json!({"kind": "archive", "key": key}));
    assert!(build_leftovers(&system.platforms_dir()).is_empty());

    // An archive that is not in the store.
    let root = system.platforms_dir().join(format!("gone-{suffix}"));
    let source = json!({"kind": "archive", "key": format!("platforms/gone-{suffix}.tar.gz")});
    let body = json!({"root": root.display().to_string(), "web_server": server, "source": source});
    let (status, saved) = put_platform(&system, &format!("platform_gone_{suffix}"), body).await;
    assert_eq!(status, 201, "{saved}");
    let (view, log) = verify(&system, &format!("platform_gone_{suffix}")).await;
    assert_eq!(view["status"], "failed", "{view}");
    assert!(view["reason"].as_str().unwrap_or_default().contains("is not in the backup store"), "{view} {log:#?}");
    assert!(!root.exists());
}

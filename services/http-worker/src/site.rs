//! What every site step works with: the site's place on its platform, the platform
//! type's rules, the web server, and the owners files get.

use std::path::{Path, PathBuf};

use aegir_contract::{HttpService, Package, PhpVersion, PlatformType, Secret, SiteContext, SiteUri, SslMode};
use aegir_worker::{StepError, StepLog};

use crate::certs::{CertStore, Installed};
use crate::config::HttpConfig;
use crate::config_queue::Reload;
use crate::files::{self, Ownership};
use crate::fpm::{self, Outcome, Pool};
use crate::permissions::{self, Owner};
use crate::platforms::{self, Platform, SiteFiles, WRITTEN_BY};
use crate::vhost::{self, Https, Vhost};
use crate::webserver::WebServer;

/// Held while `sites/sites.php` is read and rewritten, so two sites of one platform
/// changing their aliases at once do not lose each other's entries.
static SITES_PHP_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Marks a site whose installer finished, so a repeated install does not run it again.
const INSTALLED_MARKER: &str = ".aegir-installed";

pub struct SiteWork<'a> {
    pub config: &'a HttpConfig,
    pub site: &'a SiteContext,
    pub files: SiteFiles<'a>,
    pub platform: &'static dyn Platform,
    pub web: WebServer,
    pub http: HttpService,
    /// Owner of the site's directory (the script user).
    pub owner: Ownership,
    /// Owner of settings and files directories: the script user (or, with a pool per
    /// site, the site's own user), group of the web server.
    pub shared: Ownership,
    /// Owner and mode of the site's own directory.
    pub site_dir_owner: Ownership,
    pub site_dir_mode: u32,
    /// The system user the site's PHP runs as, in a pool of its own; `None` when every
    /// site goes to one shared php-fpm socket.
    pub php_user: Option<String>,
    /// Why owners are left alone, to say in the log.
    pub owner_warning: Option<String>,
}

impl<'a> SiteWork<'a> {
    pub fn new(config: &'a HttpConfig, site: &'a SiteContext) -> Result<Self, StepError> {
        Self::build(config, site, true)
    }

    /// For removing a site: its platform's code base may already be gone, and what
    /// is left of the site (its vhost) must still go.
    pub fn for_removal(config: &'a HttpConfig, site: &'a SiteContext) -> Result<Self, StepError> {
        Self::build(config, site, false)
    }

    fn build(config: &'a HttpConfig, site: &'a SiteContext, need_root: bool) -> Result<Self, StepError> {
        let platform_ctx = &site.platform;
        let root = &platform_ctx.root;
        if !config.platform_roots.iter().any(|allowed| root.is_within(allowed)) {
            let allowed: Vec<&str> = config.platform_roots.iter().map(|r| r.as_str()).collect();
            return Err(StepError::permanent(format!(
                "platform root {root} is outside the directories platforms may live in on this server ({})",
                allowed.join(", ")
            )));
        }
        if need_root && !Path::new(root.as_str()).is_dir() {
            return Err(StepError::permanent(format!(
                "platform root {root} does not exist on {}; verify the platform first",
                platform_ctx.web_server.name
            )));
        }
        if matches!(site.uri.as_str(), "all" | "default") {
            return Err(StepError::permanent(format!(
                "`{}` names a shared directory of the platform, not a site; use a host name such as example.com",
                site.uri
            )));
        }
        let http = platform_ctx.web_server.http.clone().ok_or_else(|| {
            StepError::permanent(format!(
                "{} has no http service; save it with --http_service_type",
                platform_ctx.web_server.name
            ))
        })?;
        let (owner, shared, owner_warning) = ownership(config)?;
        let php_user = config.php_fpm_socket.is_none().then(|| fpm::site_user(&site.uri));
        Ok(Self {
            config,
            site,
            files: SiteFiles::new(site),
            platform: platforms::for_type(site.platform_type),
            web: WebServer::new(http.service_type, config),
            http,
            owner,
            shared,
            site_dir_owner: owner,
            site_dir_mode: 0o755,
            php_user,
            owner_warning,
        })
    }

    /// With a pool per site: creates the site's system user (unless it exists) and its
    /// temporary directory, and has the site's directory, settings and files belong to
    /// that user with the web server's group. Before rendering the site's files.
    pub async fn prepare_php_user(&mut self, log: &StepLog) -> Result<(), StepError> {
        let Some(user) = self.php_user.clone() else {
            if let Some(version) = &self.site.php_version {
                log.warning(format!(
                    "every site on this server goes to one php-fpm ({}); PHP {version} chosen for the site is not \
                     applied (unset AEGIR_PHP_FPM_SOCKET for a pool per site)",
                    self.config.php_fpm_socket.as_deref().map(|p| p.display().to_string()).unwrap_or_default()
                ))
                .await;
            }
            return Ok(());
        };
        if !nix::unistd::Uid::effective().is_root() {
            return Err(StepError::permanent(
                "a php-fpm pool per site needs the http-worker to run as root (it creates each site's system user); \
                 run it as root, or set AEGIR_PHP_FPM_SOCKET to pass every site to one shared php-fpm",
            ));
        }
        let web_gid = permissions::group_id(&self.config.web_group).ok_or_else(|| {
            StepError::permanent(format!(
                "the web server group `{}` does not exist on this server; set AEGIR_WEB_GROUP to the group the web \
                 server runs as",
                self.config.web_group
            ))
        })?;
        let (uid, gid, created) = fpm::ensure_user(&user).await?;
        if created {
            log.info(format!("created the system user `{user}` the PHP of {} runs as", self.site.uri)).await;
        }
        let pools = &self.config.pools;
        files::ensure_dir(&pools.tmp_dir, 0o711, Ownership { uid: Some(0), gid: Some(0) })?;
        let tmp = pools.site_tmp(&user);
        if files::ensure_dir(&tmp, 0o700, Ownership { uid: Some(uid), gid: Some(gid) })? {
            log.info(format!("temporary directory {} (uploads, sessions) is the site's own", tmp.display())).await;
        }
        let site = Ownership { uid: Some(uid), gid: Some(web_gid.as_raw()) };
        self.shared = site;
        self.site_dir_owner = site;
        // Only the site's user and the web server reach into the site's directory.
        self.site_dir_mode = 0o750;
        self.owner_warning = None;
        Ok(())
    }

    /// The PHP version the site runs with a pool of its own.
    pub fn php_version(&self) -> Result<PhpVersion, StepError> {
        self.config.pools.version_for(self.site.php_version.as_ref())
    }

    /// The socket the vhost passes PHP requests to.
    fn php_socket(&self) -> Result<PathBuf, StepError> {
        match (&self.php_user, &self.config.php_fpm_socket) {
            (Some(user), _) => Ok(self.config.pools.socket(user, &self.php_version()?)),
            (None, Some(socket)) => Ok(socket.clone()),
            (None, None) => Err(StepError::permanent("no php-fpm socket: set AEGIR_PHP_FPM_SOCKET")),
        }
    }

    /// With a pool per site: writes the site's pool for its PHP version, tested with that
    /// version's whole php-fpm config, and returns once the pool takes requests.
    pub async fn apply_php_pool(&self, log: &StepLog) -> Result<(), StepError> {
        let Some(user) = &self.php_user else { return Ok(()) };
        let version = self.php_version()?;
        let pools = &self.config.pools;
        files::ensure_dir(&pools.run_dir, 0o755, Ownership::default())?;
        let socket = pools.socket(user, &version);
        let tmp = pools.site_tmp(user);
        let text = fpm::render(&Pool {
            uri: &self.site.uri,
            user,
            web_group: &self.config.web_group,
            socket: &socket,
            root: &self.files.root,
            files_dir: &self.files.files_dir(),
            tmp: &tmp,
        })?;
        let path = pools.pool_file(user, &version);
        let outcome = pools.put(&version, &path, &text, &socket).await.map_err(|e| StepError {
            reason: format!("the php-fpm pool of {} was not kept: {}", self.site.uri, e.reason),
            ..e
        })?;
        match outcome {
            Outcome::Reloaded => {
                log.info(format!(
                    "wrote the php-fpm pool {} (PHP {version}, user `{user}`, open_basedir: the platform, the site's \
                     files and {}); php-fpm {version} config test passed; php-fpm {version} reloaded",
                    path.display(),
                    tmp.display()
                ))
                .await
            }
            Outcome::Unchanged => log.info(format!("php-fpm pool {} unchanged (PHP {version})", path.display())).await,
        }
        Ok(())
    }

    /// With a pool per site: takes the site's pools off the masters of the other
    /// versions, once the vhost passes requests to its own version's pool.
    pub async fn retire_other_php_pools(&self, log: &StepLog) -> Result<(), StepError> {
        let Some(user) = &self.php_user else { return Ok(()) };
        let keep = self.php_version()?;
        let pools = &self.config.pools;
        for version in pools.installed().into_iter().filter(|v| *v != keep) {
            let path = pools.pool_file(user, &version);
            if pools.remove(&version, &path, &pools.socket(user, &version)).await? {
                log.info(format!(
                    "{} moved from PHP {version} to PHP {keep}: removed its pool {}; php-fpm {version} reloaded",
                    self.site.uri,
                    path.display()
                ))
                .await;
            }
        }
        Ok(())
    }

    /// With a pool per site: removes the site's pools, its temporary directory and its
    /// system user.
    async fn remove_php(&self, log: &StepLog) -> Result<(), StepError> {
        let Some(user) = &self.php_user else { return Ok(()) };
        let pools = &self.config.pools;
        for version in pools.installed() {
            let path = pools.pool_file(user, &version);
            if pools.remove(&version, &path, &pools.socket(user, &version)).await? {
                log.info(format!("removed the php-fpm pool {}; php-fpm {version} reloaded", path.display())).await;
            }
        }
        let tmp = pools.site_tmp(user);
        if files::remove_tree(&tmp)? {
            log.info(format!("removed the site's temporary directory {}", tmp.display())).await;
        }
        if nix::unistd::Uid::effective().is_root() && fpm::remove_user(user).await? {
            log.info(format!("removed the system user `{user}`")).await;
        }
        Ok(())
    }

    pub fn site_dir(&self) -> &Path {
        &self.files.site_dir
    }

    pub fn vhost_path(&self) -> PathBuf {
        vhost::path(&self.web.vhost_dir(), &self.site.uri)
    }

    pub fn is_installed(&self) -> bool {
        self.site_dir().join(INSTALLED_MARKER).is_file()
    }

    pub async fn warn_about_owners(&self, log: &StepLog) {
        if let Some(w) = &self.owner_warning {
            log.warning(w.clone()).await;
        }
    }

    /// The platform on disk must still be the type the site was saved with.
    pub fn check_platform_type(&self) -> Result<(), StepError> {
        let detected = platforms::detect(&self.files.root).map(|d| d.platform_type);
        if detected != Some(self.site.platform_type) {
            let found = detected.map_or("no PHP application".to_owned(), |t: PlatformType| format!("a {t} platform"));
            return Err(StepError::permanent(format!(
                "{} was saved as a {} platform but {} holds {found}; verify the platform again",
                self.site.platform.name, self.site.platform_type, self.site.platform.root
            )));
        }
        Ok(())
    }

    /// Lays out the site's directory and settings, the platform's dispatcher and the
    /// alias map. Returns whether anything changed.
    pub async fn render_files(&self, log: &StepLog) -> Result<bool, StepError> {
        let mut changed = false;
        let site_dir = self.site_dir();
        if files::ensure_dir(site_dir, self.site_dir_mode, self.site_dir_owner)? {
            log.info(format!("site directory {} is in place", site_dir.display())).await;
            changed = true;
        }
        let files_dir = self.files.files_dir();
        if files::ensure_dir(&files_dir, 0o2775, self.shared)? {
            log.info(format!("files directory {} is writable by the web server", files_dir.display())).await;
            changed = true;
        }
        if self.platform.uses_sites_php() {
            let private = site_dir.join("private");
            if files::ensure_dir(&private, 0o2770, self.shared)? {
                log.info(format!("private files directory {} is in place", private.display())).await;
                changed = true;
            }
        }
        for rendered in self.platform.settings(&self.files) {
            if files::write_deferred(&rendered.path, rendered.contents.as_bytes(), 0o440, self.shared)? {
                log.info(format!(
                    "wrote settings {} (no password in it: the web server passes it)",
                    rendered.path.display()
                ))
                .await;
                changed = true;
            }
        }
        if let Some((name, contents)) = self.platform.dispatcher() {
            let path = self.files.root.join(name);
            if let Ok(existing) = std::fs::read_to_string(&path)
                && !existing.lines().take(3).any(|l| l.contains(WRITTEN_BY))
            {
                return Err(StepError::permanent(format!(
                    "{} is the platform's own {name}, not Aegir's; move it away so each site's settings are used \
                     (Aegir writes one that loads sites/<uri>/{name})",
                    path.display()
                )));
            }
            let owner = Owner::lookup(&self.config.script_user)
                .map_or(self.owner, |o| Ownership { uid: Some(o.uid.as_raw()), gid: Some(o.gid.as_raw()) });
            if files::write(&path, contents.as_bytes(), 0o644, owner)? {
                log.info(format!("wrote the platform's settings dispatcher {}", path.display())).await;
                changed = true;
            }
        }
        if self.platform.uses_sites_php() {
            changed |= self.update_sites_php(Some(&self.site.aliases), log).await?;
        }
        if changed {
            // The settings were written without waiting for the disk: one flush for
            // every step that wrote at the same time.
            files::flush().await?;
        }
        Ok(changed)
    }

    /// Puts this site's aliases into `sites/sites.php` (or takes them out with `None`).
    pub async fn update_sites_php(&self, aliases: Option<&[SiteUri]>, log: &StepLog) -> Result<bool, StepError> {
        let _lock = SITES_PHP_LOCK.lock().await;
        let path = self.files.root.join("sites/sites.php");
        let existing = std::fs::read_to_string(&path).ok();
        let uri = self.site.uri.as_str();
        let begin = format!("// aegir: begin {uri}");
        let end = format!("// aegir: end {uri}");
        let mut text = existing.clone().unwrap_or_default();
        if let (Some(b), Some(e)) = (text.find(&begin), text.find(&end))
            && b < e
        {
            let stop = text[e..].find('\n').map_or(text.len(), |n| e + n + 1);
            text.replace_range(b..stop, "");
        }
        let adding = aliases.is_some();
        let aliases = aliases.unwrap_or_default();
        // Drupal 8 and later look for sites/<host>/ directories only when sites.php exists.
        if text.is_empty() && adding && (!aliases.is_empty() || self.site.platform_type == PlatformType::Drupal) {
            text = format!("<?php\n// {WRITTEN_BY} where marked: which site directory each alias uses.\n");
        }
        if !aliases.is_empty() {
            text.push_str(&begin);
            text.push('\n');
            for alias in aliases {
                text.push_str(&format!("$sites['{alias}'] = '{uri}';\n"));
            }
            text.push_str(&end);
            text.push('\n');
        }
        if existing.as_deref().unwrap_or_default() == text {
            return Ok(false);
        }
        files::write(&path, text.as_bytes(), 0o644, self.owner)?;
        let message = match (adding, aliases.is_empty()) {
            (true, false) => format!("listed the aliases of {uri} in {}", path.display()),
            (true, true) => format!("wrote {} so Drupal finds the site directories", path.display()),
            (false, _) => format!("removed the aliases of {uri} from {}", path.display()),
        };
        log.info(message).await;
        Ok(true)
    }

    /// Gives the site's directory, settings and files directory Aegir's owners and modes.
    pub async fn fix_permissions(&self, log: &StepLog) -> Result<bool, StepError> {
        let mut changed = files::set_mode_owner(self.site_dir(), self.site_dir_mode, self.site_dir_owner)?;
        changed |= files::set_mode_owner(&self.files.files_dir(), 0o2775, self.shared)?;
        for rendered in self.platform.settings(&self.files) {
            if rendered.path.exists() {
                changed |= files::set_mode_owner(&rendered.path, 0o440, self.shared)?;
            }
        }
        if changed {
            log.info("permissions fixed: settings readable (not writable) by the web server, files directory writable")
                .await;
        }
        Ok(changed)
    }

    /// Runs the application's installer once; a repeated install skips it.
    pub async fn run_installer(&self, log: &StepLog) -> Result<(), StepError> {
        if self.is_installed() {
            log.info("the application is already installed; installer not run again").await;
            return Ok(());
        }
        if let Some(missing) = self.platform.missing_tool(&self.files.root) {
            return Err(StepError::permanent(missing));
        }
        let admin_password = Secret::new(format!("{}A1!", uuid::Uuid::new_v4().simple()));
        let env = self.files.app_env()?;
        let Some(job) = self.platform.installer(&self.files, env, &admin_password) else {
            log.info(format!(
                "{} platforms have no installer: the site directory holds its settings",
                self.site.platform_type
            ))
            .await;
            return self.mark_installed();
        };
        let what = job.what;
        let conf = matches!(self.site.platform_type, PlatformType::Mediawiki)
            .then(|| platforms::mediawiki_install_dir(&self.files));
        if let Some(dir) = &conf {
            files::remove_tree(dir)?;
            files::ensure_dir(dir, 0o700, Ownership::default())?;
        }
        log.info(format!("running {what}")).await;
        let result = crate::php::run(&self.config.php_cli(self.site), job).await;
        if let Some(dir) = &conf {
            // The installer's own LocalSettings.php holds the password; ours does not.
            files::remove_tree(dir)?;
        }
        result?;
        log.info(format!("{what} finished; the administrator account is `admin` (use login-reset to log in)")).await;
        self.mark_installed()
    }

    pub fn mark_installed(&self) -> Result<(), StepError> {
        files::write(&self.site_dir().join(INSTALLED_MARKER), b"", 0o600, Ownership::default()).map(|_| ())
    }

    /// Whether the current vhost is the "site disabled" one.
    pub fn is_disabled(&self) -> bool {
        std::fs::read_to_string(self.vhost_path()).is_ok_and(|t| t.lines().any(|l| l == vhost::DISABLED_MARKER))
    }

    /// Writes the site's vhost (serving the site or the disabled page), tested with the
    /// rest of the config, and returns once the web server serves it (`Reload::Always`:
    /// reloads even when the vhost was already written). Returns whether it changed.
    pub async fn apply_vhost(&self, enabled: bool, reload: Reload, log: &StepLog) -> Result<bool, StepError> {
        let store = CertStore::new(&self.config.certs);
        let current = if self.site.ssl.is_off() { None } else { store.current(self.site.uri.as_str()) };
        self.apply_vhost_with(enabled, reload, current.as_ref(), log).await
    }

    /// [`Self::apply_vhost`] with https served from `cert` (when the site has ssl).
    pub async fn apply_vhost_with(
        &self,
        enabled: bool,
        reload: Reload,
        cert: Option<&Installed>,
        log: &StepLog,
    ) -> Result<bool, StepError> {
        let socket = self.php_socket()?;
        let env = self.files.app_env()?;
        let store = CertStore::new(&self.config.certs);
        let challenge_root = store.challenge_root();
        let https = cert.filter(|_| !self.site.ssl.is_off()).map(|c| Https {
            port: self.config.certs.https_port,
            cert: &c.cert,
            key: &c.key,
            forced: self.site.ssl == SslMode::Forced,
        });
        let text = vhost::render(
            self.http.service_type,
            &Vhost {
                uri: &self.site.uri,
                aliases: &self.site.aliases,
                redirection: self.site.redirection,
                root: &self.files.root,
                port: self.http.port,
                url: &self.files.url,
                fpm_socket: &socket,
                env: &env,
                enabled,
                challenge_root: &challenge_root,
                https,
            },
        )?;
        let dir = self.web.vhost_dir();
        files::ensure_dir(&dir, 0o755, Ownership::default())?;
        let path = self.vhost_path();
        let kind = self.http.service_type;
        let applied = self.web.apply_vhost(&path, &text, reload, log.lane()).await.map_err(|e| {
            if e.reason.starts_with(&format!("{kind} config test failed")) {
                StepError {
                    reason: format!(
                        "the vhost of {} was not kept because the config test failed:\n{}",
                        self.site.uri, e.reason
                    ),
                    ..e
                }
            } else {
                e
            }
        })?;
        let together = match applied.together {
            0 => String::new(),
            n => format!(" (one test and reload for this and {n} other changes)"),
        };
        if applied.changed {
            let state = if enabled { "serving the site" } else { "serving the \"site disabled\" page" };
            log.info(format!(
                "wrote the vhost {} ({state}); {kind} config test passed; {kind} reloaded{together}",
                path.display()
            ))
            .await;
        } else if reload == Reload::Always {
            log.info(format!("vhost {} unchanged; {kind} reloaded", path.display())).await;
        }
        Ok(applied.changed)
    }

    /// Serves the site (`true`) or the "site disabled" page, reloading if that changed.
    pub async fn set_enabled(&self, enabled: bool, log: &StepLog) -> Result<(), StepError> {
        if !self.site_dir().is_dir() {
            return Err(StepError::permanent(format!(
                "{} is not installed on {}; install it first",
                self.site.uri, self.site.platform.name
            )));
        }
        self.apply_vhost(enabled, Reload::IfChanged, log).await?;
        let state = if enabled { "enabled" } else { "disabled" };
        log.success(format!("{} is {state}", self.site.uri)).await;
        Ok(())
    }

    /// Removes every trace of the site from this server: vhost (then reload), site
    /// directory, alias entries. Safe to repeat, and safe after a half-done install.
    pub async fn remove(&self, log: &StepLog) -> Result<(), StepError> {
        let vhost = self.vhost_path();
        if self.web.remove_vhost(&vhost).await? {
            log.info(format!("removed the vhost {}; {} reloaded", vhost.display(), self.http.service_type)).await;
        }
        self.remove_php(log).await?;
        // Its certificates go with the vhost that used them.
        if CertStore::new(&self.config.certs).remove_site(self.site.uri.as_str())? {
            log.info(format!("removed the certificates of {}", self.site.uri)).await;
        }
        self.remove_files(log).await
    }

    /// Removes the site's directory and its alias entries from the platform, leaving
    /// the vhost alone. Safe to repeat.
    pub async fn remove_files(&self, log: &StepLog) -> Result<(), StepError> {
        if self.platform.uses_sites_php() || self.files.root.join("sites/sites.php").is_file() {
            self.update_sites_php(None, log).await?;
        }
        let site_dir = self.site_dir().to_path_buf();
        let removed = tokio::task::spawn_blocking(move || files::remove_tree(&site_dir))
            .await
            .map_err(|e| StepError::permanent(format!("removing the site directory crashed: {e}")))??;
        if removed {
            log.info(format!("removed the site directory {}", self.site_dir().display())).await;
        }
        Ok(())
    }

    /// Whether the site's vhost on this server serves it from this platform's root.
    pub fn vhost_serves_this_platform(&self) -> bool {
        std::fs::read_to_string(self.vhost_path()).is_ok_and(|text| vhost::serves_root(&text, &self.files.root))
    }

    /// Gives everything under the files directories (as a copy or an archive left it)
    /// the web server's group and rights: directories setgid and group-writable, files
    /// group-readable (and writable where the web server writes). Returns how many
    /// entries changed.
    pub async fn fix_file_tree(&self) -> Result<usize, StepError> {
        let mut trees = vec![(self.files.files_dir(), 0o2775, 0o664)];
        if self.platform.uses_sites_php() {
            trees.push((self.site_dir().join("private"), 0o2770, 0o660));
        }
        let owner = self.shared;
        tokio::task::spawn_blocking(move || {
            let mut changed = 0;
            for (top, dir_mode, file_mode) in trees {
                let mut stack = vec![top];
                while let Some(dir) = stack.pop() {
                    let Ok(entries) = std::fs::read_dir(&dir) else { continue };
                    for entry in entries.flatten() {
                        let path = entry.path();
                        // Symlinks are left as they are: following one could change
                        // files outside the site.
                        let Ok(kind) = entry.file_type() else { continue };
                        if kind.is_dir() {
                            changed += usize::from(files::set_mode_owner(&path, dir_mode, owner)?);
                            stack.push(path);
                        } else if kind.is_file() {
                            changed += usize::from(files::set_mode_owner(&path, file_mode, owner)?);
                        }
                    }
                }
            }
            Ok(changed)
        })
        .await
        .map_err(|e| StepError::permanent(format!("fixing the permissions of the site's files crashed: {e}")))?
    }

    /// Runs the platform's deploy work in the application (see [`Platform::deploy`]).
    pub async fn deploy_in_application(&self, renamed_from: Option<&SiteUri>, log: &StepLog) -> Result<(), StepError> {
        let env = self.files.app_env()?;
        let Some(job) = self.platform.deploy(&self.files, env, renamed_from) else {
            let why = match self.site.platform_type {
                PlatformType::Mediawiki => "MediaWiki keeps its address ($wgServer) in the settings just rendered",
                _ => "the application keeps its address in the settings just rendered",
            };
            log.info(format!("{why}; nothing in the database to update")).await;
            return Ok(());
        };
        if let Some(missing) = self.platform.missing_tool(&self.files.root) {
            return Err(StepError::permanent(missing));
        }
        log.info(format!("running {}", job.what)).await;
        let what = job.what;
        crate::php::run_logged(&self.config.php_cli(self.site), job, log).await?;
        log.info(format!("{what} finished")).await;
        Ok(())
    }

    /// What the platform and the site's own directory hold.
    pub async fn packages(&self) -> Vec<Package> {
        let platform = self.platform;
        let root = self.files.root.clone();
        let site_dir = self.site_dir().to_path_buf();
        tokio::task::spawn_blocking(move || platform.packages(&root, Some(&site_dir))).await.unwrap_or_default()
    }
}

/// The owners of site files: the script user (root when it does not exist), with the
/// web server's group on what the web server reads or writes. A worker that is not
/// root changes no owner.
fn ownership(config: &HttpConfig) -> Result<(Ownership, Ownership, Option<String>), StepError> {
    if !nix::unistd::Uid::effective().is_root() {
        let warning = "not changing owners: this worker is not root".to_owned();
        return Ok((Ownership::default(), Ownership::default(), Some(warning)));
    }
    let web_gid = permissions::group_id(&config.web_group).ok_or_else(|| {
        StepError::permanent(format!(
            "the web server group `{}` does not exist on this server; set AEGIR_WEB_GROUP to the group the web server runs as",
            config.web_group
        ))
    })?;
    let (uid, gid, warning) = match Owner::lookup(&config.script_user) {
        Some(o) => (o.uid.as_raw(), o.gid.as_raw(), None),
        None => (0, 0, Some(format!("user `{}` does not exist; site files stay owned by root", config.script_user))),
    };
    Ok((
        Ownership { uid: Some(uid), gid: Some(gid) },
        Ownership { uid: Some(uid), gid: Some(web_gid.as_raw()) },
        warning,
    ))
}

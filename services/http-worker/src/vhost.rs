//! The vhost of a site, for nginx and apache: its uri and aliases (optionally
//! redirected to the uri), the platform root, PHP through php-fpm with the site's
//! database account passed as parameters, and the "site disabled" variant that still
//! serves ACME challenges so certificates keep renewing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use aegir_contract::{HttpServiceType, Secret, SiteUri};
use aegir_worker::StepError;

use crate::platforms::WRITTEN_BY;

pub struct Vhost<'a> {
    pub uri: &'a SiteUri,
    pub aliases: &'a [SiteUri],
    pub redirection: bool,
    pub root: &'a Path,
    pub port: u16,
    /// The site's address, where aliases redirect to.
    pub url: &'a str,
    pub fpm_socket: &'a Path,
    /// Passed to PHP with every request.
    pub env: &'a [(&'static str, Secret)],
    pub enabled: bool,
    /// Where ACME challenge answers are (`<dir>/.well-known/acme-challenge/<token>`),
    /// served for every name of the site whatever its state.
    pub challenge_root: &'a Path,
    /// The site over https, when it has a certificate.
    pub https: Option<Https<'a>>,
}

/// A site's https: its port, certificate and key, and whether http redirects to it.
pub struct Https<'a> {
    pub port: u16,
    pub cert: &'a Path,
    pub key: &'a Path,
    pub forced: bool,
}

impl Https<'_> {
    /// `https://$host` with the port unless it is 443 (nginx variables).
    fn nginx_origin(&self) -> String {
        if self.port == 443 { "https://$host".to_owned() } else { format!("https://$host:{}", self.port) }
    }

    /// `https://%{HTTP_HOST}` with the port unless it is 443 (apache variables; the host
    /// without the port the client gave).
    fn apache_origin(&self) -> String {
        if self.port == 443 {
            "https://%{SERVER_NAME}".to_owned()
        } else {
            format!("https://%{{SERVER_NAME}}:{}", self.port)
        }
    }
}

/// The marker line telling a disabled site's vhost apart (verify keeps the state).
pub const DISABLED_MARKER: &str = "# aegir: site disabled";

const DISABLED_PAGE: &str = "<!DOCTYPE html><html><head><title>Site disabled</title></head>\
<body><h1>Site disabled</h1><p>This site has been disabled by its administrator.</p></body></html>";

/// Where the vhost of `uri` lives.
pub fn path(vhost_dir: &Path, uri: &SiteUri) -> PathBuf {
    vhost_dir.join(format!("{uri}.conf"))
}

/// Whether a vhost we wrote (`text`) serves its site from the platform at `root`.
pub fn serves_root(text: &str, root: &Path) -> bool {
    let root = root.display().to_string();
    let nginx = format!("root {root};");
    let apache = format!("DocumentRoot \"{root}\"");
    text.lines().map(str::trim).any(|l| l == nginx || l == apache)
}

/// Whether a value can go into a vhost inside double quotes.
pub fn carries(value: &str) -> bool {
    value.chars().all(|c| c.is_ascii_alphanumeric() || "._~+=/@%:,!^*()[]-".contains(c))
}

/// Values go into the config inside double quotes; refuse what could end the quote,
/// start a variable (`$` in nginx) or break the line.
fn check_value(name: &str, value: &str) -> Result<(), StepError> {
    if carries(value) {
        Ok(())
    } else {
        Err(StepError::permanent(format!(
            "{name} holds characters the web server config cannot carry safely (quotes, `$`, `\\`, `;`, `#`, spaces); \
             use letters, digits and ._~+=/@%:,!^*()[]- only"
        )))
    }
}

fn check_path(what: &str, path: &Path) -> Result<String, StepError> {
    let text = path.display().to_string();
    check_value(what, &text)?;
    Ok(text)
}

pub fn render(kind: HttpServiceType, v: &Vhost) -> Result<String, StepError> {
    for (name, value) in v.env {
        check_value(name, value.expose())?;
    }
    let root = check_path("the platform root", v.root)?;
    let socket = check_path("the php-fpm socket path", v.fpm_socket)?;
    let challenges = check_path("the ACME challenge directory", v.challenge_root)?;
    let tls = match &v.https {
        Some(h) => Some((check_path("the certificate path", h.cert)?, check_path("the key path", h.key)?)),
        None => None,
    };
    let served: Vec<&str> = if v.redirection {
        vec![v.uri.as_str()]
    } else {
        std::iter::once(v.uri).chain(v.aliases).map(SiteUri::as_str).collect()
    };
    let redirected: Vec<&str> = if v.redirection { v.aliases.iter().map(SiteUri::as_str).collect() } else { vec![] };
    let state = if v.enabled { "" } else { DISABLED_MARKER };
    let mut out = format!("# {WRITTEN_BY}: the vhost of {}. Changes here are overwritten.\n{state}\n", v.uri);
    match kind {
        HttpServiceType::Nginx => nginx(&mut out, v, &served, &redirected, (&root, &socket, &challenges), tls),
        HttpServiceType::Apache => apache(&mut out, v, &served, &redirected, (&root, &socket, &challenges), tls),
    }
    Ok(out)
}

type Paths<'s> = (&'s str, &'s str, &'s str);

fn nginx(
    out: &mut String,
    v: &Vhost,
    served: &[&str],
    redirected: &[&str],
    paths: Paths,
    tls: Option<(String, String)>,
) {
    let (root, socket, challenges) = paths;
    let port = v.port;
    // The answers of this server's own orders first, else what another ACME client put
    // in the platform. Both from one location (full paths under `root /`, where `$uri` is
    // already normalised): nginx pays for every location of every vhost at each test and
    // reload, which with thousands of sites is most of their time.
    let challenge = format!(
        "    # ACME challenges are served even when the site is disabled or forced to https.\n    \
             location ^~ /.well-known/acme-challenge/ {{\n        \
                 root /;\n        \
                 default_type text/plain;\n        \
                 try_files {challenges}$uri {root}$uri =404;\n    \
             }}\n"
    );
    let https = v.https.as_ref().zip(tls.as_ref());
    let ssl_listen = |https: &Https, (cert, key): &(String, String)| {
        format!("    listen {} ssl;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n", https.port)
    };
    let names = served.join(" ");
    let body = nginx_body(v, root, socket, &challenge);
    match https {
        Some((h, _)) if h.forced => {
            let _ = write!(
                out,
                "server {{\n    \
                     listen {port};\n    \
                     server_name {names};\n\
                 {challenge}    \
                     location / {{\n        \
                         return 301 {origin}$request_uri;\n    \
                     }}\n\
                 }}\n",
                origin = h.nginx_origin(),
            );
        }
        _ => {
            let _ = write!(out, "server {{\n    listen {port};\n    server_name {names};\n{body}}}\n");
        }
    }
    if let Some((h, files)) = https {
        let _ = write!(out, "server {{\n{}    server_name {names};\n{body}}}\n", ssl_listen(h, files));
    }
    if !redirected.is_empty() {
        let listen = match https {
            Some((h, files)) => format!("    listen {port};\n{}", ssl_listen(h, files)),
            None => format!("    listen {port};\n"),
        };
        let _ = write!(
            out,
            "server {{\n\
                 {listen}    \
                 server_name {names};\n\
                 {challenge}    \
                 location / {{\n        \
                     return 301 {url}$request_uri;\n    \
                 }}\n\
             }}\n",
            names = redirected.join(" "),
            url = v.url,
        );
    }
}

/// What a server block of the site holds after its `listen` and `server_name`.
fn nginx_body(v: &Vhost, root: &str, socket: &str, challenge: &str) -> String {
    let uri = v.uri.as_str();
    let mut out = format!(
        "    root {root};\n    \
             index index.php index.html;\n    \
             client_max_body_size 64m;\n\n\
         {challenge}"
    );
    if !v.enabled {
        let _ = write!(
            out,
            "    location / {{\n        \
                     default_type text/html;\n        \
                     return 503 '{DISABLED_PAGE}';\n    \
                 }}\n"
        );
    } else {
        let mut params = String::new();
        for (name, value) in v.env {
            let _ = writeln!(params, "        fastcgi_param {name} \"{}\";", value.expose());
        }
        let _ = write!(
            out,
            "    # Never served: hidden files (our install leftovers, .htaccess, .git), other\n    \
                 # sites' files and every settings file. One regex for all three, as each\n    \
                 # location costs every test and reload of the server.\n    \
                 location ~ /\\.|^/sites/[^/]+/(files|private)/|^/sites/.*\\.(php|inc|info|yml|sql|txt|json)$ {{\n        \
                     return 404;\n    \
                 }}\n    \
                 # The site's uploads: static files only, never run as PHP.\n    \
                 location ^~ /sites/{uri}/files/ {{\n        \
                     try_files $uri =404;\n    \
                 }}\n    \
                 location ~ [^/]\\.php(/|$) {{\n        \
                     fastcgi_split_path_info ^(.+?\\.php)(/.*)$;\n        \
                     # try_files empties the path info, so it is kept first.\n        \
                     set $path_info $fastcgi_path_info;\n        \
                     try_files $fastcgi_script_name =404;\n        \
                     fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n        \
                     fastcgi_param SCRIPT_NAME $fastcgi_script_name;\n        \
                     fastcgi_param PATH_INFO $path_info;\n        \
                     fastcgi_param QUERY_STRING $query_string;\n        \
                     fastcgi_param REQUEST_METHOD $request_method;\n        \
                     fastcgi_param CONTENT_TYPE $content_type;\n        \
                     fastcgi_param CONTENT_LENGTH $content_length;\n        \
                     fastcgi_param REQUEST_URI $request_uri;\n        \
                     fastcgi_param DOCUMENT_URI $document_uri;\n        \
                     fastcgi_param DOCUMENT_ROOT $document_root;\n        \
                     fastcgi_param SERVER_PROTOCOL $server_protocol;\n        \
                     fastcgi_param REQUEST_SCHEME $scheme;\n        \
                     fastcgi_param HTTPS $https if_not_empty;\n        \
                     fastcgi_param GATEWAY_INTERFACE CGI/1.1;\n        \
                     fastcgi_param SERVER_SOFTWARE nginx/$nginx_version;\n        \
                     fastcgi_param REMOTE_ADDR $remote_addr;\n        \
                     fastcgi_param REMOTE_PORT $remote_port;\n        \
                     fastcgi_param SERVER_ADDR $server_addr;\n        \
                     fastcgi_param SERVER_PORT $server_port;\n        \
                     fastcgi_param SERVER_NAME $server_name;\n        \
                     fastcgi_param REDIRECT_STATUS 200;\n        \
                     fastcgi_param HTTP_PROXY \"\";\n\
             {params}        \
                     fastcgi_pass unix:{socket};\n    \
                 }}\n    \
                 location / {{\n        \
                     try_files $uri $uri/ /index.php?$args;\n    \
                 }}\n"
        );
    }
    out
}

fn apache(
    out: &mut String,
    v: &Vhost,
    served: &[&str],
    redirected: &[&str],
    paths: Paths,
    tls: Option<(String, String)>,
) {
    let (root, socket, challenges) = paths;
    let port = v.port;
    let names = |list: &[&str]| {
        let mut head = format!("    ServerName {}\n", list[0]);
        if list.len() > 1 {
            let _ = writeln!(head, "    ServerAlias {}", list[1..].join(" "));
        }
        head
    };
    // The answers of this server's own orders first, else what another ACME client put
    // in the platform (served from the document root).
    let challenge = format!(
        "    # ACME challenges are served even when the site is disabled or forced to https.\n    \
             <Directory \"{challenges}/.well-known/acme-challenge\">\n        \
                 Require all granted\n    \
             </Directory>\n    \
             RewriteEngine On\n    \
             RewriteCond \"{challenges}%{{REQUEST_URI}}\" -f\n    \
             RewriteRule \"^/\\.well-known/acme-challenge/[^/]+$\" \"{challenges}%{{REQUEST_URI}}\" [L]\n"
    );
    let document_root = format!(
        "    DocumentRoot \"{root}\"\n    \
             <Directory \"{root}\">\n        \
                 Options +FollowSymLinks -Indexes\n        \
                 AllowOverride None\n        \
                 Require all granted\n        \
                 DirectoryIndex index.php index.html\n    \
             </Directory>\n"
    );
    let https = v.https.as_ref().zip(tls.as_ref());
    let ssl = |(cert, key): &(String, String)| {
        format!("    SSLEngine on\n    SSLCertificateFile \"{cert}\"\n    SSLCertificateKeyFile \"{key}\"\n")
    };
    let body = apache_body(v, &document_root, socket, &challenge);
    match https {
        Some((h, _)) if h.forced => {
            let _ = write!(
                out,
                "<VirtualHost *:{port}>\n{head}{document_root}{challenge}    \
                     RewriteRule !^/\\.well-known/acme-challenge/ {origin}%{{REQUEST_URI}} [R=301,L]\n\
                 </VirtualHost>\n",
                head = names(served),
                origin = h.apache_origin(),
            );
        }
        _ => {
            let _ = write!(out, "<VirtualHost *:{port}>\n{}{body}</VirtualHost>\n", names(served));
        }
    }
    if let Some((h, files)) = https {
        let _ = write!(out, "<VirtualHost *:{}>\n{}{}{body}</VirtualHost>\n", h.port, names(served), ssl(files));
    }
    if !redirected.is_empty() {
        let redirect = format!(
            "{document_root}{challenge}    RedirectMatch permanent ^/(?!\\.well-known/acme-challenge/)(.*)$ {}/$1\n",
            v.url
        );
        let _ = write!(out, "<VirtualHost *:{port}>\n{}{redirect}</VirtualHost>\n", names(redirected));
        if let Some((h, files)) = https {
            let _ = write!(
                out,
                "<VirtualHost *:{}>\n{}{}{redirect}</VirtualHost>\n",
                h.port,
                names(redirected),
                ssl(files)
            );
        }
    }
}

/// What a virtual host of the site holds after its names.
fn apache_body(v: &Vhost, document_root: &str, socket: &str, challenge: &str) -> String {
    let uri = v.uri.as_str();
    let mut out = format!("{document_root}{challenge}");
    if !v.enabled {
        let _ = write!(
            out,
            "    # Everything but ACME challenges (served even now) gets the disabled page.\n    \
                 ErrorDocument 503 \"{DISABLED_PAGE}\"\n    \
                 RewriteEngine On\n    \
                 RewriteRule !^/\\.well-known/acme-challenge/ - [R=503,L]\n"
        );
    } else {
        for (name, value) in v.env {
            let _ = writeln!(out, "    SetEnv {name} \"{}\"", value.expose());
        }
        let _ = write!(
            out,
            "    FallbackResource /index.php\n    \
                 # Hidden files, other sites' files and settings files stay private; uploads never run as PHP.\n    \
                 <LocationMatch \"/\\.(?!well-known/)\">\n        \
                     Require all denied\n    \
                 </LocationMatch>\n    \
                 <LocationMatch \"^/sites/(?!{uri_re}/files/)[^/]+/(files|private)/\">\n        \
                     Require all denied\n    \
                 </LocationMatch>\n    \
                 <LocationMatch \"^/sites/.*\\.(php|inc|info|yml|sql|txt|json)$\">\n        \
                     Require all denied\n    \
                 </LocationMatch>\n    \
                 <LocationMatch \"^/sites/[^/]+/files/.*\\.(php|phtml|phar)\">\n        \
                     Require all denied\n    \
                 </LocationMatch>\n    \
                 <FilesMatch \"\\.php$\">\n        \
                     SetHandler \"proxy:unix:{socket}|fcgi://localhost\"\n    \
                 </FilesMatch>\n",
            uri_re = uri.replace('.', "\\."),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> SiteUri {
        SiteUri::parse(s).unwrap()
    }

    fn vhost<'a>(aliases: &'a [SiteUri], env: &'a [(&'static str, Secret)], main: &'a SiteUri) -> Vhost<'a> {
        Vhost {
            uri: main,
            aliases,
            redirection: false,
            root: Path::new("/var/aegir/platforms/wp"),
            port: 8080,
            url: "http://example.com:8080",
            fpm_socket: Path::new("/run/php/php8.2-fpm.sock"),
            env,
            enabled: true,
            challenge_root: Path::new("/var/aegir/ssl/challenges"),
            https: None,
        }
    }

    #[test]
    fn nginx_serves_uri_and_aliases_and_passes_the_database_account() {
        let main = uri("example.com");
        let aliases = [uri("www.example.com")];
        let env = [("AEGIR_DB_PASSWORD", Secret::new("s3cret"))];
        let text = render(HttpServiceType::Nginx, &vhost(&aliases, &env, &main)).unwrap();
        assert!(text.contains("server_name example.com www.example.com;"), "{text}");
        assert!(text.contains("listen 8080;"));
        assert!(text.contains("fastcgi_param AEGIR_DB_PASSWORD \"s3cret\";"));
        assert!(text.contains("fastcgi_pass unix:/run/php/php8.2-fpm.sock;"));
    }

    #[test]
    fn redirection_sends_aliases_to_the_uri() {
        let main = uri("example.com");
        let aliases = [uri("www.example.com")];
        let mut v = vhost(&aliases, &[], &main);
        v.redirection = true;
        let nginx = render(HttpServiceType::Nginx, &v).unwrap();
        assert!(nginx.contains("server_name example.com;"));
        assert!(nginx.contains("server_name www.example.com;\n"), "{nginx}");
        assert!(nginx.contains("return 301 http://example.com:8080$request_uri;"));
        let apache = render(HttpServiceType::Apache, &v).unwrap();
        assert!(apache.contains("ServerName www.example.com\n"), "{apache}");
        assert!(
            apache.contains(
                "RedirectMatch permanent ^/(?!\\.well-known/acme-challenge/)(.*)$ http://example.com:8080/$1"
            )
        );
    }

    #[test]
    fn disabled_vhost_still_serves_acme_challenges() {
        let main = uri("example.com");
        let env = [("AEGIR_DB_PASSWORD", Secret::new("s3cret"))];
        let mut v = vhost(&[], &env, &main);
        v.enabled = false;
        for kind in [HttpServiceType::Nginx, HttpServiceType::Apache] {
            let text = render(kind, &v).unwrap();
            assert!(text.contains(DISABLED_MARKER));
            assert!(text.contains("acme-challenge"));
            assert!(text.contains("503"));
            assert!(!text.contains("s3cret"), "a disabled vhost passes no credentials");
        }
    }

    #[test]
    fn a_vhost_tells_which_platform_it_serves() {
        let main = uri("example.com");
        let mut v = vhost(&[], &[], &main);
        for enabled in [true, false] {
            v.enabled = enabled;
            for kind in [HttpServiceType::Nginx, HttpServiceType::Apache] {
                let text = render(kind, &v).unwrap();
                assert!(serves_root(&text, Path::new("/var/aegir/platforms/wp")), "{kind:?}");
                assert!(!serves_root(&text, Path::new("/var/aegir/platforms/w")), "{kind:?}: a prefix is another root");
                assert!(!serves_root(&text, Path::new("/var/aegir/platforms/wp2")), "{kind:?}");
            }
        }
    }

    #[test]
    fn https_serves_the_site_and_forced_redirects_http_except_acme_challenges() {
        let main = uri("example.com");
        let aliases = [uri("www.example.com")];
        let env = [("AEGIR_DB_PASSWORD", Secret::new("s3cret"))];
        let mut v = vhost(&aliases, &env, &main);
        let (cert, key) = (Path::new("/var/aegir/ssl/sites/example.com/1/fullchain.pem"), Path::new("/k/privkey.pem"));
        v.https = Some(Https { port: 8443, cert, key, forced: false });
        let on = render(HttpServiceType::Nginx, &v).unwrap();
        assert!(on.contains("listen 8080;\n    server_name example.com www.example.com;\n    root"), "{on}");
        assert!(on.contains("listen 8443 ssl;"), "{on}");
        assert!(on.contains("ssl_certificate_key /k/privkey.pem;"));
        assert_eq!(on.matches("fastcgi_pass").count(), 2, "http and https both serve the site");
        v.https = Some(Https { port: 8443, cert, key, forced: true });
        let forced = render(HttpServiceType::Nginx, &v).unwrap();
        assert_eq!(forced.matches("fastcgi_pass").count(), 1, "only https serves the site: {forced}");
        assert!(forced.contains("return 301 https://$host:8443$request_uri;"));
        assert_eq!(forced.matches("try_files /var/aegir/ssl/challenges$uri ").count(), 2, "{forced}");
        let apache = render(HttpServiceType::Apache, &v).unwrap();
        assert!(apache.contains("<VirtualHost *:8443>"), "{apache}");
        assert!(apache.contains("SSLCertificateKeyFile \"/k/privkey.pem\""));
        assert!(apache.contains(
            "RewriteRule !^/\\.well-known/acme-challenge/ https://%{SERVER_NAME}:8443%{REQUEST_URI} [R=301,L]"
        ));
        assert_eq!(apache.matches("SetHandler").count(), 1, "{apache}");
    }

    #[test]
    fn values_that_could_break_the_config_are_refused() {
        let main = uri("example.com");
        let env = [("AEGIR_DB_PASSWORD", Secret::new("a\";evil"))];
        let err = render(HttpServiceType::Nginx, &vhost(&[], &env, &main)).unwrap_err();
        assert!(err.reason.contains("AEGIR_DB_PASSWORD"));
        assert!(!err.reason.contains("evil"));
    }
}

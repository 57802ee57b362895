//! `/api/v1/sites`: sites on platforms. Saving a site only records it; the `install`
//! task creates it on its servers.

use aegir_contract::certificate::check_supplied;
use aegir_contract::{
    ClientName, ContextName, DbIdent, Email, Lane, LanguageCode, PhpVersion, PlatformName, ProfileName, Secret,
    ServerName, SiteTitle, SiteUri, SslMode, SuppliedCertificate, TaskKind,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::PgConnection;
use utoipa::ToSchema;

use crate::db;
use crate::db::sites::{SiteFilter, SiteRecord, Start};
use crate::error::{ApiError, ErrorBody};
use crate::input::{Fields, JsonObject, Params, PathParam, parse_segment};
use crate::state::AppState;
use crate::views::{SiteStatus, SiteView};

/// More aliases than any vhost should carry.
const MAX_ALIASES: usize = 100;

/// A site as `PUT /api/v1/sites/{uri}` takes it.
#[derive(Debug, ToSchema)]
pub struct SiteInput {
    /// The platform whose code serves the site; it must have been verified.
    #[schema(value_type = String, example = "@platform_wp")]
    pub platform: PlatformName,
    /// The server whose database service holds the site's database. Defaults to the
    /// platform's web server when that server has a database service.
    #[schema(value_type = Option<String>, example = "@server_master")]
    pub db_server: Option<ServerName>,
    /// The install profile (Drupal); one the platform's last verify reported, if it reported any.
    #[schema(value_type = Option<String>, example = "standard")]
    pub profile: Option<ProfileName>,
    #[schema(value_type = String, required = false, default = "en", example = "en")]
    pub language: LanguageCode,
    /// Other names the site answers to; none may be the uri or a name of another site.
    #[schema(value_type = Vec<String>, required = false, example = json!(["example.com"]))]
    pub aliases: Vec<SiteUri>,
    /// Whether the aliases redirect (301) to the uri.
    #[schema(required = false, default = false)]
    pub redirection: bool,
    /// The client that owns the site.
    #[schema(value_type = Option<String>, example = "acme")]
    pub client: Option<ClientName>,
    /// Defaults to the uri.
    #[schema(value_type = String, required = false, example = "Example shop")]
    pub title: SiteTitle,
    /// The application's first administrator. Defaults to the client's e-mail address,
    /// else `webmaster@<uri>`.
    #[schema(value_type = Option<String>, example = "admin@example.com")]
    pub admin_email: Option<Email>,
    /// Seconds between runs of the site's cron (60 to 604800), or 0 for none. Defaults
    /// to the installation's interval (AEGIR_CRON_INTERVAL_SECS).
    #[schema(example = 3600)]
    pub cron_interval: Option<i32>,
    /// The PHP version the site's php-fpm pool runs: one the platform's web server's last
    /// verify found installed. Defaults to that server's default version. Changing it
    /// takes effect with the site's next `verify`.
    #[schema(value_type = Option<String>, example = "8.2")]
    pub php_version: Option<PhpVersion>,
    /// `off` (default), `on` (http and https) or `forced` (http redirects to https). The
    /// certificate is obtained over ACME for the uri and aliases at install or verify.
    #[schema(value_type = Option<String>, example = "forced")]
    pub ssl: SslMode,
}

const FIELDS: &[&str] = &[
    "platform",
    "db_server",
    "profile",
    "language",
    "aliases",
    "redirection",
    "client",
    "title",
    "admin_email",
    "cron_interval",
    "php_version",
    "ssl",
];

impl SiteInput {
    pub fn parse(body: Map<String, Value>, uri: &SiteUri) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body, FIELDS)?;
        let platform = match fields.parsed::<ContextName>("platform")? {
            None => {
                return Err(ApiError::invalid("platform", "`platform` is missing; give one such as `@platform_wp`"));
            }
            Some(ContextName::Platform(platform)) => platform,
            Some(other) => {
                return Err(ApiError::invalid(
                    "platform",
                    format!("`{other}` is a {}, not a platform; give one such as `@platform_wp`", other.context_type()),
                ));
            }
        };
        let db_server = match fields.parsed::<ContextName>("db_server")? {
            None => None,
            Some(ContextName::Server(server)) => Some(server),
            Some(other) => {
                return Err(ApiError::invalid(
                    "db_server",
                    format!(
                        "`{other}` is a {}, not a server; give a database server such as `@server_master`",
                        other.context_type()
                    ),
                ));
            }
        };
        let profile = fields.parsed::<ProfileName>("profile")?;
        let language = match fields.parsed::<LanguageCode>("language")? {
            Some(language) => language,
            None => LanguageCode::parse("en").expect("`en` is a valid language code"),
        };
        let aliases = fields.parsed_list::<SiteUri>("aliases")?.unwrap_or_default();
        check_aliases(uri, &aliases)?;
        let redirection = fields.boolean("redirection")?.unwrap_or(false);
        let client = fields.parsed::<ClientName>("client")?;
        let title = match fields.parsed::<SiteTitle>("title")? {
            Some(title) => title,
            None => SiteTitle::parse(uri.as_str()).map_err(|_| {
                ApiError::invalid(
                    "title",
                    format!(
                        "the uri has {} characters, too many to be the default title (120 at most); give `title`",
                        uri.as_str().len()
                    ),
                )
            })?,
        };
        let admin_email = fields.parsed::<Email>("admin_email")?;
        let cron_interval = match fields.take_number("cron_interval")? {
            None => None,
            Some(n @ (0 | 60..=604_800)) => Some(n as i32),
            Some(n) => {
                return Err(ApiError::invalid(
                    "cron_interval",
                    format!("`cron_interval` is {n}: give seconds from 60 to 604800, or 0 for no cron"),
                ));
            }
        };
        let php_version = fields.parsed::<PhpVersion>("php_version")?;
        let ssl = fields.parsed::<SslMode>("ssl")?.unwrap_or_default();
        Ok(Self {
            ssl,
            platform,
            db_server,
            profile,
            language,
            aliases,
            redirection,
            client,
            title,
            admin_email,
            cron_interval,
            php_version,
        })
    }
}

/// A site's PHP version must be one its web server's last verify found installed.
async fn check_php_version(conn: &mut PgConnection, server: &ServerName, version: &PhpVersion) -> Result<(), ApiError> {
    let row = db::servers::get(&mut *conn, server).await?;
    let installed = row.and_then(|r| r.php_versions);
    match installed {
        None => Err(ApiError::invalid(
            "php_version",
            format!(
                "the PHP versions installed on `@{server}` are not known yet; verify `@{server}` first \
                 (`aegir @{server} verify`), then choose one of them"
            ),
        )),
        Some(installed) if installed.iter().any(|v| v == version.as_str()) => Ok(()),
        Some(installed) => {
            let list = if installed.is_empty() { "none".to_owned() } else { installed.join(", ") };
            Err(ApiError::invalid(
                "php_version",
                format!(
                    "PHP {version} is not installed on `@{server}` (installed: {list}); install its php{version}-fpm \
                     package there and verify `@{server}`, or choose an installed version"
                ),
            ))
        }
    }
}

fn check_aliases(uri: &SiteUri, aliases: &[SiteUri]) -> Result<(), ApiError> {
    if aliases.len() > MAX_ALIASES {
        return Err(ApiError::invalid(
            "aliases",
            format!("a site may have at most {MAX_ALIASES} aliases, not {}", aliases.len()),
        ));
    }
    for (i, alias) in aliases.iter().enumerate() {
        if alias == uri {
            return Err(ApiError::invalid(
                "aliases",
                format!("alias `{alias}` is the site's own uri; leave it out of `aliases`"),
            ));
        }
        if aliases[..i].contains(alias) {
            return Err(ApiError::invalid("aliases", format!("alias `{alias}` is given twice; give it once")));
        }
    }
    Ok(())
}

pub(crate) fn not_found(uri: &SiteUri) -> ApiError {
    ApiError::not_found(format!("site `@{uri}` does not exist; create it with PUT /api/v1/sites/{uri}"))
}

/// `length` characters drawn from `[a-z0-9]`.
pub(crate) fn random_lower_alphanumeric(length: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..length).map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())])).collect()
}

pub(crate) fn random_password() -> String {
    rand::rng().sample_iter(&Alphanumeric).take(32).map(char::from).collect()
}

/// The administrator address when none is given: the client's, else `webmaster@<uri>`.
fn default_admin_email(uri: &SiteUri, client: Option<(&ClientName, Option<String>)>) -> Result<Email, ApiError> {
    match client {
        Some((client, Some(email))) => Email::parse(&email).map_err(|e| {
            ApiError::invalid(
                "admin_email",
                format!(
                    "the address of client `{client}` cannot be the site's admin address ({e}); give `admin_email`"
                ),
            )
        }),
        _ => Email::parse(&format!("webmaster@{uri}")).map_err(|e| {
            ApiError::invalid(
                "admin_email",
                format!("the default admin address does not work for this uri ({e}); give `admin_email`"),
            )
        }),
    }
}

/// Create or update a site record (Aegir's `save`); `install` creates the site itself.
#[utoipa::path(
    put, path = "/api/v1/sites/{uri}", operation_id = "save_site", tag = "sites",
    params(("uri" = String, Path, description = "Site uri, e.g. `www.example.com`")),
    request_body = SiteInput,
    responses(
        (status = 201, description = "Created", body = SiteView),
        (status = 200, description = "Updated", body = SiteView),
        (status = 400, description = "The body is not a JSON object", body = ErrorBody),
        (status = 404, description = "The platform, db server or client does not exist (`field` names it)", body = ErrorBody),
        (status = 409, description = "An alias or the uri is another site's name; or an installed site would move to another platform or db server", body = ErrorBody),
        (status = 422, description = "A field is missing, unknown or not valid; the platform is not verified; the db server has no database service; the profile is not one the platform offers", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn save(
    State(state): State<AppState>,
    PathParam(uri): PathParam,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<SiteView>), ApiError> {
    let uri: SiteUri = parse_segment("uri", &uri)?;
    let input = SiteInput::parse(body, &uri)?;
    let mut tx = state.pool.begin().await?;
    let (created, view) = save_in(&mut tx, &uri, &input).await?;
    tx.commit().await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(view)))
}

/// Saves a site record in `tx` with every check of `PUT /api/v1/sites/{uri}`; true when
/// it was created. The API and the command interface both come through here.
pub(crate) async fn save_in(
    tx: &mut PgConnection,
    uri: &SiteUri,
    input: &SiteInput,
) -> Result<(bool, SiteView), ApiError> {
    let context = format!("@{uri}");
    db::sites::lock_names(&mut *tx).await?;
    let current = db::sites::lock(&mut *tx, uri).await?;

    let platform_name = &input.platform;
    let platform = db::platforms::lock(&mut *tx, platform_name, false).await?.ok_or_else(|| {
        ApiError::not_found_in(
            "platform",
            format!("platform `@{platform_name}` does not exist; create it with PUT /api/v1/platforms/{platform_name}"),
        )
    })?;
    if platform.platform_type.is_none() {
        return Err(ApiError::invalid(
            "platform",
            format!(
                "platform `@{platform_name}` has not been verified yet, so its kind of application is unknown; \
                 verify @{platform_name} first"
            ),
        ));
    }
    let moving_in = current.as_ref().is_none_or(|site| site.platform != platform_name.as_str());
    if platform.locked && moving_in {
        return Err(ApiError::invalid(
            "platform",
            format!("platform `@{platform_name}` is locked and takes no new sites; run `unlock` on it first"),
        ));
    }
    if let (Some(profile), Some(profiles)) = (&input.profile, &platform.profiles)
        && !profiles.is_empty()
        && !profiles.iter().any(|p| p == profile.as_str())
    {
        let offered = profiles.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ");
        return Err(ApiError::invalid(
            "profile",
            format!("platform `@{platform_name}` offers no profile `{profile}`; its profiles are {offered}"),
        ));
    }

    if let Some(version) = &input.php_version {
        let web_server = db::stored("server name", platform.web_server.clone())?;
        check_php_version(&mut *tx, &web_server, version).await?;
    }

    let db_server = match &input.db_server {
        Some(server) => server.clone(),
        None => db::stored("server name", platform.web_server.clone())?,
    };
    let server = db::servers::lock(&mut *tx, &db_server, false).await?.ok_or_else(|| {
        ApiError::not_found_in(
            "db_server",
            format!("server `@{db_server}` does not exist; create it with PUT /api/v1/servers/{db_server} first"),
        )
    })?;
    if server.db_service_type.is_none() {
        let message = if input.db_server.is_some() {
            format!("`@{db_server}` offers no database service; save it with `db` or choose another db_server")
        } else {
            format!(
                "`db_server` is missing, and the platform's web server `@{db_server}` offers no database service \
                 to default to; give a db_server such as `@server_master`"
            )
        };
        return Err(ApiError::invalid("db_server", message));
    }

    let client = match &input.client {
        None => None,
        Some(name) => {
            let row = db::clients::get(&mut *tx, name).await?.ok_or_else(|| {
                ApiError::not_found_in(
                    "client",
                    format!("client `{name}` does not exist; create it with PUT /api/v1/clients/{name}"),
                )
            })?;
            Some((name, row.email))
        }
    };
    let admin_email = match input.admin_email.clone() {
        Some(email) => email,
        None => default_admin_email(uri, client)?,
    };

    if let Some(current) = &current {
        let moved_platform = current.platform != platform_name.as_str();
        let moved_db = current.db_server != db_server.as_str();
        if current.status.is_installed() && (moved_platform || moved_db) {
            let field = if moved_platform { "platform" } else { "db_server" };
            return Err(ApiError::conflict(
                Some(field),
                format!(
                    "`@{uri}` is installed on `@{}` with its database on `@{}`; an installed site moves with the \
                     `migrate` task (`aegir @{uri} migrate --platform=…`)",
                    current.platform, current.db_server
                ),
            ));
        }
        if (moved_platform || moved_db)
            && let Some((id, kind)) = db::tasks::pending(&mut *tx, &context).await?
        {
            return Err(ApiError::conflict(
                Some(if moved_platform { "platform" } else { "db_server" }),
                format!("task {id} ({kind}) of `@{uri}` has not finished; wait for it before moving the site"),
            ));
        }
    }

    if let Some(holder) = db::sites::holder_of_name(&mut *tx, uri.as_str(), uri).await? {
        return Err(ApiError::conflict(
            Some("uri"),
            format!("`{uri}` is an alias of `@{holder}`; remove it from that site's aliases first"),
        ));
    }
    for alias in &input.aliases {
        if let Some(holder) = db::sites::holder_of_name(&mut *tx, alias.as_str(), uri).await? {
            return Err(ApiError::conflict(
                Some("aliases"),
                format!("`{alias}` already names `@{holder}`; an alias can belong to one site only"),
            ));
        }
    }

    // Generated once, on create; an update keeps the stored account.
    let db_ident = DbIdent::for_site(uri, &random_lower_alphanumeric(6));
    let password = random_password();
    let record = SiteRecord {
        uri,
        platform: platform_name,
        db_server: &db_server,
        profile: input.profile.as_ref().map(ProfileName::as_str),
        language: input.language.as_str(),
        redirection: input.redirection,
        client: input.client.as_ref(),
        title: input.title.as_str(),
        admin_email: admin_email.as_str(),
        cron_interval: input.cron_interval,
        php_version: input.php_version.as_ref(),
        ssl: input.ssl,
    };
    let created = db::sites::save(&mut *tx, &record, (&db_ident, &db_ident, &password)).await?;
    db::sites::set_aliases(&mut *tx, uri, &input.aliases).await?;
    let row = db::sites::get(&mut *tx, uri).await?.ok_or_else(|| ApiError::internal("a saved site vanished"))?;
    let packages = db::packages::of(&mut *tx, &context).await?;
    Ok((created, row.into_view(packages)))
}

/// A certificate as `PUT /api/v1/sites/{uri}/certificate` takes it.
// No `Debug`: it holds the key.
#[derive(ToSchema)]
pub struct CertificateInput {
    /// PEM: the site's certificate first, then the intermediates that chain it to a root.
    /// It must cover the site's uri and every alias, and be valid now.
    #[schema(example = "-----BEGIN CERTIFICATE-----\n…\n-----END CERTIFICATE-----\n")]
    pub certificate: String,
    /// PEM: the certificate's private key, unencrypted (PKCS#8, RSA or EC). It goes to
    /// the site's web server (stored there with mode 0600) inside the task that installs
    /// it, and is never stored by the API, logged or shown.
    #[schema(write_only, example = "-----BEGIN PRIVATE KEY-----\n…\n-----END PRIVATE KEY-----\n")]
    pub key: String,
}

impl CertificateInput {
    fn parse(body: Map<String, Value>) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body, &["certificate", "key"])?;
        let certificate = fields.string("certificate")?;
        let certificate = fields.require("certificate", certificate)?;
        let key = fields.string("key")?;
        let key = fields.require("key", key)?;
        Ok(Self { certificate, key })
    }
}

/// Serve a certificate supplied by the site's owner instead of one from ACME. It is
/// checked first (it reads, the key is its own, it covers the uri and every alias, it is
/// valid now); then a `verify` task installs it on the site's web server. The renewal
/// queue never orders an ACME certificate in its place: the site shows `ssl_status`
/// `expiring` as its end nears, until a new one is uploaded. A `verify` with `renew`
/// switches the site back to ACME.
#[utoipa::path(
    put, path = "/api/v1/sites/{uri}/certificate", operation_id = "put_site_certificate", tag = "sites",
    params(("uri" = String, Path, description = "Site uri, e.g. `www.example.com`")),
    request_body = CertificateInput,
    responses(
        (status = 202, description = "Checked; the `verify` task that installs it is queued", body = crate::views::TaskView),
        (status = 400, description = "The body is not a JSON object", body = ErrorBody),
        (status = 404, description = "No such site", body = ErrorBody),
        (status = 409, description = "The site has ssl `off`, is not installed, or a task that changes it has not finished", body = ErrorBody),
        (status = 422, description = "The certificate or key cannot be read, the key is not the certificate's, the certificate does not cover every name of the site, or it is expired or not yet valid (`field` says which); nothing changed", body = ErrorBody),
    )
)]
pub async fn put_certificate(
    State(state): State<AppState>,
    PathParam(uri): PathParam,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<crate::views::TaskView>), ApiError> {
    let uri: SiteUri = parse_segment("uri", &uri)?;
    let input = CertificateInput::parse(body)?;
    let (chain, key) = (input.certificate, Secret::new(input.key));

    let mut tx = state.pool.begin().await?;
    let site = db::sites::lock(&mut tx, &uri).await?.ok_or_else(|| not_found(&uri))?;
    if site.ssl == "off" {
        return Err(ApiError::conflict(
            Some("ssl"),
            format!(
                "`@{uri}` is served over http only (ssl `off`); save it with ssl `on` or `forced` first \
                 (`aegir save @{uri} --ssl=on`), then supply its certificate"
            ),
        ));
    }
    let names: Vec<&str> = std::iter::once(site.uri.as_str()).chain(site.aliases.iter().map(String::as_str)).collect();
    let summary = check_supplied(&chain, key.expose(), &names, chrono::Utc::now()).map_err(|e| {
        let field = if e.is_about_key() { "key" } else { "certificate" };
        ApiError::invalid(field, format!("the certificate for `@{uri}` was not accepted: {e}"))
    })?;
    let supplied = SuppliedCertificate { chain, key };
    let context = ContextName::Site(uri.clone());
    let row = crate::routes::tasks::enqueue_with_certificate(
        &mut tx,
        &context,
        (TaskKind::Verify, Lane::Interactive),
        &crate::task_args::TaskArgs::default(),
        Some(supplied),
    )
    .await?;
    tx.commit().await?;
    state.outbox.wake();
    tracing::info!(
        site = %uri, task_id = %row.id, serial = %summary.serial, expires_at = %summary.not_after,
        "supplied certificate checked; its install is queued"
    );
    Ok((StatusCode::ACCEPTED, Json(row.into())))
}

/// Remove the certificate supplied by the site's owner and go back to ACME: a `verify`
/// that orders a certificate over ACME is queued (as `verify` with `renew` would be).
/// Once the ACME certificate serves, the supplied one and its key are removed from the
/// web server; should the order fail, the supplied one keeps serving and the site shows
/// the failure.
#[utoipa::path(
    delete, path = "/api/v1/sites/{uri}/certificate", operation_id = "delete_site_certificate", tag = "sites",
    params(("uri" = String, Path, description = "Site uri, e.g. `www.example.com`")),
    responses(
        (status = 202, description = "The `verify` task that orders a certificate from ACME in its place is queued", body = crate::views::TaskView),
        (status = 404, description = "No such site", body = ErrorBody),
        (status = 409, description = "The site serves no certificate its owner supplied, or a task that changes it has not finished", body = ErrorBody),
    )
)]
pub async fn delete_certificate(
    State(state): State<AppState>,
    PathParam(uri): PathParam,
) -> Result<(StatusCode, Json<crate::views::TaskView>), ApiError> {
    let uri: SiteUri = parse_segment("uri", &uri)?;
    let mut tx = state.pool.begin().await?;
    let site = db::sites::lock(&mut tx, &uri).await?.ok_or_else(|| not_found(&uri))?;
    if site.ssl_source.as_deref() != Some("user") {
        let serves = match site.ssl_source.as_deref() {
            Some("acme") => "serves a certificate from ACME",
            _ if site.ssl == "off" => "is served over http only (ssl `off`)",
            _ => "has no certificate yet",
        };
        return Err(ApiError::conflict(
            None,
            format!(
                "`@{uri}` {serves}, not one its owner supplied: there is nothing to remove; \
                 `aegir @{uri} verify --renew` orders a new certificate from ACME"
            ),
        ));
    }
    let args = crate::task_args::TaskArgs { renew: true, ..Default::default() };
    let context = ContextName::Site(uri.clone());
    let row = crate::routes::tasks::enqueue(&mut tx, &context, (TaskKind::Verify, Lane::Interactive), &args).await?;
    tx.commit().await?;
    state.outbox.wake();
    tracing::info!(site = %uri, task_id = %row.id, "supplied certificate removed; an ACME order is queued");
    Ok((StatusCode::ACCEPTED, Json(row.into())))
}

/// `/api/v1/sites/www.example.com/x`: a uri is a host name, never a path.
pub async fn uri_with_path(uri: axum::http::Uri) -> ApiError {
    let site = uri.path().trim_start_matches("/api/v1/sites/");
    ApiError::invalid(
        "uri",
        format!("site uri `{site}` is not valid: a site uri is a host name such as `www.example.com`, without a path"),
    )
}

/// One site.
#[utoipa::path(
    get, path = "/api/v1/sites/{uri}", operation_id = "get_site", tag = "sites",
    params(("uri" = String, Path, description = "Site uri, e.g. `www.example.com`")),
    responses(
        (status = 200, description = "The site", body = SiteView),
        (status = 404, description = "No such site", body = ErrorBody),
        (status = 422, description = "Not a site uri", body = ErrorBody),
    )
)]
pub async fn get(State(state): State<AppState>, PathParam(uri): PathParam) -> Result<Json<SiteView>, ApiError> {
    let uri: SiteUri = parse_segment("uri", &uri)?;
    let row = db::sites::get(&state.pool, &uri).await?.ok_or_else(|| not_found(&uri))?;
    let packages = db::packages::of(&state.pool, &format!("@{uri}")).await?;
    let mut view = row.into_view(packages);
    view.stats = db::site_stats::of(&state.pool, &uri).await?;
    Ok(Json(view))
}

/// A page of `GET /api/v1/sites`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SitePage {
    pub items: Vec<SiteView>,
    /// How many sites match the filters in all, whatever the page. Exact. Without `search`
    /// it is read from counts kept per platform, client and status, at no cost per site;
    /// with `search` the matches are counted, which for a text most uris contain takes
    /// about 15 ms at 100,000 sites.
    pub total: i64,
    /// Where the next page starts: give it as `after`, with the same filters. Absent on
    /// the last page, and when `limit` is 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "www.example.com")]
    pub next: Option<String>,
}

/// Sites, ordered by uri. Page through them with `after` (the `next` of the page before),
/// which costs the same at any depth; `offset` skips that many index entries, so a deep
/// offset costs more (about 10 ms to skip 100,000 sites).
#[utoipa::path(
    get, path = "/api/v1/sites", operation_id = "list_sites", tag = "sites",
    params(
        ("platform" = Option<String>, Query, description = "Only the sites on this platform, e.g. `@platform_wp`"),
        ("client" = Option<String>, Query, description = "Only the sites of this client, e.g. `acme`"),
        ("status" = Option<SiteStatus>, Query, description = "Only the sites in this status"),
        ("search" = Option<String>, Query, description = "Only the sites whose uri contains this text (case-insensitive)"),
        ("limit" = Option<i64>, Query, description = "At most this many (default 50, at most 500)"),
        ("offset" = Option<i64>, Query, description = "Skip this many (default 0); not with `after`"),
        ("after" = Option<String>, Query, description = "Start after this uri: the `next` of the page before; not with `offset`"),
    ),
    responses(
        (status = 200, description = "A page of sites", body = SitePage),
        (status = 422, description = "A bad query parameter, or both `after` and `offset`", body = ErrorBody),
    )
)]
pub async fn list(State(state): State<AppState>, params: Params) -> Result<Json<SitePage>, ApiError> {
    params.allow(&["platform", "client", "status", "search", "limit", "offset", "after"])?;
    let platform = match params.parsed::<ContextName>("platform")? {
        None => None,
        Some(ContextName::Platform(platform)) => Some(platform),
        Some(other) => {
            return Err(ApiError::invalid(
                "platform",
                format!("`{other}` is a {}, not a platform; give one such as `@platform_wp`", other.context_type()),
            ));
        }
    };
    let search = params.parsed::<String>("search")?.map(|s| s.to_lowercase());
    if search.as_ref().is_some_and(|s| s.len() > 253) {
        return Err(ApiError::invalid("search", "`search` is longer than any uri; give at most 253 characters"));
    }
    let filter = SiteFilter { platform, client: params.parsed("client")?, status: params.parsed("status")?, search };
    let page = params.page()?;
    let start = match params.parsed::<String>("after")? {
        None => Start::Offset(page.offset),
        Some(_) if params.parsed::<String>("offset")?.is_some() => {
            return Err(ApiError::invalid(
                "after",
                "give `after` or `offset`, not both: `after` already says where the page starts",
            ));
        }
        Some(after) => Start::After(SiteUri::parse(&after).map_err(|e| {
            ApiError::invalid("after", format!("`after` takes the `next` of a previous page, a site uri; {e}"))
        })?),
    };
    let list = db::sites::list(&state.pool, &filter, page.limit, &start).await?;
    let contexts: Vec<String> = list.rows.iter().map(|row| format!("@{}", row.uri)).collect();
    let mut packages = db::packages::of_all(&state.pool, &contexts).await?;
    let items = list
        .rows
        .into_iter()
        .zip(contexts)
        .map(|(row, context)| row.into_view(packages.remove(&context).unwrap_or_default()))
        .collect();
    Ok(Json(SitePage { items, total: list.total, next: list.next }))
}

/// Delete the record of a site that is not installed (`new` or `failed`). An installed
/// site is deleted with the `delete` task.
#[utoipa::path(
    delete, path = "/api/v1/sites/{uri}", operation_id = "delete_site", tag = "sites",
    params(("uri" = String, Path, description = "Site uri, e.g. `www.example.com`")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such site", body = ErrorBody),
        (status = 409, description = "The site is installed (use the `delete` task), or one of its tasks has not finished", body = ErrorBody),
        (status = 422, description = "Not a site uri", body = ErrorBody),
    )
)]
pub async fn delete(State(state): State<AppState>, PathParam(uri): PathParam) -> Result<StatusCode, ApiError> {
    let uri: SiteUri = parse_segment("uri", &uri)?;
    let mut tx = state.pool.begin().await?;
    let site = db::sites::lock(&mut tx, &uri).await?.ok_or_else(|| not_found(&uri))?;
    if site.status == SiteStatus::Cloning {
        return Err(ApiError::conflict(
            None,
            format!("`@{uri}` is being made as a clone of another site; its record goes by itself if the clone fails"),
        ));
    }
    if site.status.is_installed() {
        return Err(ApiError::conflict(
            None,
            format!(
                "`@{uri}` is installed ({}); delete it from its servers with the `delete` task \
                 (`aegir @{uri} delete`, or POST /api/v1/tasks with task `delete`)",
                site.status
            ),
        ));
    }
    if let Some((id, kind)) = db::tasks::pending(&mut tx, &format!("@{uri}")).await? {
        return Err(ApiError::conflict(
            None,
            format!("task {id} ({kind}) of `@{uri}` has not finished; wait for it before deleting the site"),
        ));
    }
    db::sites::delete(&mut tx, &uri).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_have_the_promised_shape() {
        let suffix = random_lower_alphanumeric(6);
        assert_eq!(suffix.len(), 6);
        assert!(suffix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{suffix}");
        let password = random_password();
        assert_eq!(password.len(), 32);
        assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(password, random_password());
    }

    #[test]
    fn the_default_admin_address_comes_from_the_client_then_the_uri() {
        let uri = SiteUri::parse("www.example.com").unwrap();
        let acme = ClientName::parse("acme").unwrap();
        let email = default_admin_email(&uri, Some((&acme, Some("ops@acme.example".into())))).unwrap();
        assert_eq!(email.as_str(), "ops@acme.example");
        assert_eq!(default_admin_email(&uri, Some((&acme, None))).unwrap().as_str(), "webmaster@www.example.com");
        assert_eq!(default_admin_email(&uri, None).unwrap().as_str(), "webmaster@www.example.com");
        assert!(default_admin_email(&SiteUri::parse("intranet").unwrap(), None).is_err());
        assert!(default_admin_email(&uri, Some((&acme, Some("ops@localhost".into())))).is_err());
    }
}

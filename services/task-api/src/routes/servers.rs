//! `/api/v1/servers`: machines and the services they offer.

use aegir_amqp::topology::QueueName;
use aegir_contract::{
    ContextName, DbServiceType, DnsServiceType, HostName, HttpServiceType, Route, Secret, ServerName, ServiceKind,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{FETCHED, listing};
use crate::db;
use crate::error::{ApiError, ErrorBody};
use crate::input::{Fields, JsonObject, Params, PathParam, parse_segment};
use crate::state::AppState;
use crate::views::{Page, ServerView};

/// A server as `PUT /api/v1/servers/{name}` takes it.
#[derive(Debug, ToSchema)]
pub struct ServerInput {
    /// Address other servers reach this one at.
    #[schema(value_type = String, required = false, default = "localhost", example = "localhost")]
    pub remote_host: HostName,
    /// The web service; absent when the server offers none.
    pub http: Option<HttpInput>,
    /// The database service; absent when the server offers none.
    pub db: Option<DbInput>,
    /// The name service; absent when the server offers none.
    pub dns: Option<DnsInput>,
    /// The server whose name service keeps the records of this server's sites: one with
    /// a `dns` service. Absent: the server itself when it offers dns, else no records.
    #[schema(value_type = Option<String>, example = "@server_ns1")]
    pub dns_server: Option<ServerName>,
}

#[derive(Debug, ToSchema)]
pub struct DnsInput {
    /// `bind`.
    #[schema(value_type = String, example = "bind")]
    pub service_type: DnsServiceType,
}

#[derive(Debug, ToSchema)]
pub struct HttpInput {
    /// `nginx` or `apache`.
    #[schema(value_type = String, example = "nginx")]
    pub service_type: HttpServiceType,
    #[schema(required = false, default = 80, minimum = 1, maximum = 65535)]
    pub port: u16,
}

#[derive(Debug, ToSchema)]
pub struct DbInput {
    /// `mariadb` or `mysql`.
    #[schema(value_type = String, example = "mariadb")]
    pub service_type: DbServiceType,
    /// Where the db-worker connects; defaults to `remote_host`.
    #[schema(value_type = String, required = false, example = "127.0.0.1")]
    pub host: HostName,
    #[schema(required = false, default = 3306, minimum = 1, maximum = 65535)]
    pub port: u16,
    /// The administrator account the db-worker uses.
    #[schema(example = "root")]
    pub admin_user: String,
    /// May be empty. Omitted on update: the stored password is kept. Never returned.
    #[schema(value_type = Option<String>, write_only)]
    pub admin_password: Option<Secret>,
}

const DEFAULT_HTTP_PORT: u16 = 80;
const DEFAULT_DB_PORT: u16 = 3306;

impl ServerInput {
    pub fn parse(body: Map<String, Value>) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body, &["remote_host", "http", "db", "dns", "dns_server"])?;
        let remote_host = match fields.parsed::<HostName>("remote_host")? {
            Some(host) => host,
            None => HostName::parse("localhost").expect("`localhost` is a valid host name"),
        };
        let http = match fields.object("http", &["service_type", "port"])? {
            None => None,
            Some(mut http) => {
                let service_type = http.parsed("service_type")?;
                Some(HttpInput {
                    service_type: http.require("service_type", service_type)?,
                    port: http.port("port")?.unwrap_or(DEFAULT_HTTP_PORT),
                })
            }
        };
        let db = match fields.object("db", &["service_type", "host", "port", "admin_user", "admin_password"])? {
            None => None,
            Some(mut db) => {
                let service_type = db.parsed("service_type")?;
                let service_type = db.require("service_type", service_type)?;
                let host = db.parsed::<HostName>("host")?.unwrap_or_else(|| remote_host.clone());
                let port = db.port("port")?.unwrap_or(DEFAULT_DB_PORT);
                let admin_user = db.string("admin_user")?;
                let admin_user = db.require("admin_user", admin_user)?;
                check_admin_user(&db.name("admin_user"), &admin_user)?;
                let admin_password = db.string("admin_password")?.map(Secret::new);
                if let Some(password) = &admin_password {
                    check_admin_password(&db.name("admin_password"), password)?;
                }
                Some(DbInput { service_type, host, port, admin_user, admin_password })
            }
        };
        let dns = match fields.object("dns", &["service_type"])? {
            None => None,
            Some(mut dns) => {
                let service_type = dns.parsed("service_type")?;
                Some(DnsInput { service_type: dns.require("service_type", service_type)? })
            }
        };
        let dns_server = match fields.parsed::<ContextName>("dns_server")? {
            None => None,
            Some(ContextName::Server(server)) => Some(server),
            Some(other) => {
                return Err(ApiError::invalid(
                    "dns_server",
                    format!(
                        "`{other}` is a {}, not a server; give a server with a dns service such as `@server_ns1`",
                        other.context_type()
                    ),
                ));
            }
        };
        Ok(Self { remote_host, http, db, dns, dns_server })
    }
}

/// Database account names: what MariaDB and MySQL accept without quoting.
fn check_admin_user(field: &str, user: &str) -> Result<(), ApiError> {
    let ok = !user.is_empty()
        && user.len() <= 80
        && user.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!(
                "db admin user `{user}` is not valid: use 1 to 80 letters, digits, `_`, `.` or `-`, such as `root`"
            ),
        ))
    }
}

fn check_admin_password(field: &str, password: &Secret) -> Result<(), ApiError> {
    // The value itself is never echoed back.
    if password.expose().len() > 1024 || password.expose().contains('\0') {
        return Err(ApiError::invalid(
            field,
            "the db admin password must be at most 1024 bytes, without NUL characters",
        ));
    }
    Ok(())
}

pub(crate) fn not_found(name: &ServerName) -> ApiError {
    ApiError::not_found(format!("server `@{name}` does not exist; create it with PUT /api/v1/servers/{name}"))
}

/// Create or update a server (Aegir's `save`).
#[utoipa::path(
    put, path = "/api/v1/servers/{name}", operation_id = "save_server", tag = "servers",
    params(("name" = String, Path, description = "Server name, e.g. `server_master`")),
    request_body = ServerInput,
    responses(
        (status = 201, description = "Created", body = ServerView),
        (status = 200, description = "Updated", body = ServerView),
        (status = 400, description = "The body is not a JSON object", body = ErrorBody),
        (status = 409, description = "Platforms or sites use a service the update removes", body = ErrorBody),
        (status = 422, description = "A field is missing, unknown or not valid", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn save(
    State(state): State<AppState>,
    PathParam(name): PathParam,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<ServerView>), ApiError> {
    let name: ServerName = parse_segment("name", &name)?;
    let input = ServerInput::parse(body)?;

    let mut tx = state.pool.begin().await?;
    if let Some(current) = db::servers::lock(&mut tx, &name, true).await? {
        if current.http_service_type.is_some() && input.http.is_none() {
            let platforms = db::platforms::names_on_server(&mut tx, &name, FETCHED).await?;
            if !platforms.is_empty() {
                return Err(ApiError::conflict(
                    Some("http"),
                    format!(
                        "platforms {} run on the web service of `@{name}`; delete them before removing its `http`",
                        listing(&platforms, "@")
                    ),
                ));
            }
        }
        if current.db_service_type.is_some() && input.db.is_none() {
            let sites = db::sites::on_db_server(&mut tx, &name, FETCHED).await?;
            if !sites.is_empty() {
                return Err(ApiError::conflict(
                    Some("db"),
                    format!(
                        "sites {} keep their databases on `@{name}`; move them before removing its `db`",
                        listing(&sites, "@")
                    ),
                ));
            }
        }
    }
    check_dns(&mut tx, &name, &input).await?;
    let saved = db::servers::save(&mut tx, &name, &input).await?;
    tx.commit().await?;
    declare_work_queues(&state, &name, &input);

    let status = if saved.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(ServerView::try_from(saved.row)?)))
}

/// The dns server named must offer dns (the server itself, when it names itself, must
/// be saved with it); a server others name as theirs keeps its dns service.
async fn check_dns(tx: &mut sqlx::PgConnection, name: &ServerName, input: &ServerInput) -> Result<(), ApiError> {
    match &input.dns_server {
        Some(dns_server) if dns_server == name && input.dns.is_none() => {
            return Err(ApiError::invalid(
                "dns_server",
                format!("`@{name}` names itself as its dns server but offers no dns service; give it `dns` too"),
            ));
        }
        Some(dns_server) if dns_server == name => {}
        Some(dns_server) => match db::servers::has_dns_service(&mut *tx, dns_server).await? {
            None => {
                return Err(ApiError::invalid(
                    "dns_server",
                    format!(
                        "server `@{dns_server}` does not exist; create it with a dns service \
                         (PUT /api/v1/servers/{dns_server}) first"
                    ),
                ));
            }
            Some(false) => {
                return Err(ApiError::invalid(
                    "dns_server",
                    format!("`@{dns_server}` offers no dns service; save it with `dns` or choose another dns_server"),
                ));
            }
            Some(true) => {}
        },
        None => {}
    }
    if input.dns.is_none() {
        let naming = db::servers::naming_dns_server(&mut *tx, name, FETCHED).await?;
        if !naming.is_empty() {
            return Err(ApiError::conflict(
                Some("dns"),
                format!(
                    "servers {} keep their sites' records on `@{name}`; give them another dns_server before \
                     removing its `dns`",
                    listing(&naming, "@")
                ),
            ));
        }
    }
    Ok(())
}

/// Declares the work queues of the server's services. Its workers connect with a broker
/// user that may consume but not declare, so without this they would wait for the first
/// step the scheduler sends them; with it, `aegir @server verify` finds them listening.
/// The scheduler declares the same queues before it sends work, so a broker that is down
/// now costs nothing but a log line.
fn declare_work_queues(state: &AppState, name: &ServerName, input: &ServerInput) {
    let mut services = Vec::new();
    if input.http.is_some() {
        // Archives are made and unpacked where the sites' files are.
        services.extend([ServiceKind::Http, ServiceKind::Backup]);
    }
    if input.db.is_some() {
        services.push(ServiceKind::Db);
    }
    if input.dns.is_some() {
        services.push(ServiceKind::Dns);
    }
    let queues: Vec<QueueName> =
        services.into_iter().flat_map(|service| QueueName::lanes_of(&Route::new(name.clone(), service))).collect();
    let broker = state.broker.clone();
    tokio::spawn(async move {
        for queue in queues {
            let declared = tokio::time::timeout(std::time::Duration::from_secs(10), broker.declare(&queue)).await;
            match declared {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(queue = %queue.name(), error = %e, "cannot declare a work queue yet"),
                Err(_) => {
                    tracing::warn!(queue = %queue.name(), "the broker is not reachable; the scheduler declares it later")
                }
            }
        }
    });
}

/// One server.
#[utoipa::path(
    get, path = "/api/v1/servers/{name}", operation_id = "get_server", tag = "servers",
    params(("name" = String, Path, description = "Server name, e.g. `server_master`")),
    responses(
        (status = 200, description = "The server", body = ServerView),
        (status = 404, description = "No such server", body = ErrorBody),
        (status = 422, description = "Not a server name", body = ErrorBody),
    )
)]
pub async fn get(State(state): State<AppState>, PathParam(name): PathParam) -> Result<Json<ServerView>, ApiError> {
    let name: ServerName = parse_segment("name", &name)?;
    let row = db::servers::get(&state.pool, &name).await?.ok_or_else(|| not_found(&name))?;
    Ok(Json(ServerView::try_from(row)?))
}

/// Servers, ordered by name.
#[utoipa::path(
    get, path = "/api/v1/servers", operation_id = "list_servers", tag = "servers",
    params(
        ("limit" = Option<i64>, Query, description = "At most this many (default 50, at most 500)"),
        ("offset" = Option<i64>, Query, description = "Skip this many (default 0)"),
    ),
    responses(
        (status = 200, description = "A page of servers", body = Page<ServerView>),
        (status = 422, description = "A bad query parameter", body = ErrorBody),
    )
)]
pub async fn list(State(state): State<AppState>, params: Params) -> Result<Json<Page<ServerView>>, ApiError> {
    params.allow(&["limit", "offset"])?;
    let (rows, total) = db::servers::list(&state.pool, params.page()?).await?;
    let items = rows.into_iter().map(ServerView::try_from).collect::<Result<_, _>>()?;
    Ok(Json(Page { items, total }))
}

/// Delete a server no platform or site uses.
#[utoipa::path(
    delete, path = "/api/v1/servers/{name}", operation_id = "delete_server", tag = "servers",
    params(("name" = String, Path, description = "Server name, e.g. `server_master`")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such server", body = ErrorBody),
        (status = 409, description = "Platforms or sites use it", body = ErrorBody),
    )
)]
pub async fn delete(State(state): State<AppState>, PathParam(name): PathParam) -> Result<StatusCode, ApiError> {
    let name: ServerName = parse_segment("name", &name)?;
    let mut tx = state.pool.begin().await?;
    db::servers::lock(&mut tx, &name, true).await?.ok_or_else(|| not_found(&name))?;
    let platforms = db::platforms::names_on_server(&mut tx, &name, FETCHED).await?;
    if !platforms.is_empty() {
        return Err(ApiError::conflict(
            None,
            format!("platforms {} run on `@{name}`; delete them first", listing(&platforms, "@")),
        ));
    }
    let sites = db::sites::on_db_server(&mut tx, &name, FETCHED).await?;
    if !sites.is_empty() {
        return Err(ApiError::conflict(
            None,
            format!("sites {} keep their databases on `@{name}`; move or delete them first", listing(&sites, "@")),
        ));
    }
    let naming = db::servers::naming_dns_server(&mut tx, &name, FETCHED).await?;
    if !naming.is_empty() {
        return Err(ApiError::conflict(
            None,
            format!(
                "servers {} keep their sites' records on `@{name}`; give them another dns_server first",
                listing(&naming, "@")
            ),
        ));
    }
    db::servers::delete(&mut tx, &name).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

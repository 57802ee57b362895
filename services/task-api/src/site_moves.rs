//! What the archive tasks need decided when they are requested: which archive a
//! restore reads, the new site a clone makes (its record is created here, `cloning`),
//! where a migrate moves the site and whether the target platform has what the site
//! uses. The answer is a [`TaskOptions`], so the scheduler's plan is a pure function of
//! the request.

use std::cmp::Ordering;

use aegir_contract::{
    BackupRef, DbIdent, PlatformContext, PlatformName, PlatformType, Secret, ServerContext, ServerName, SiteContext,
    SiteDatabase, SiteUri, TaskKind, TaskOptions,
};
use sqlx::PgConnection;

use crate::db;
use crate::db::sites::SiteRecord;
use crate::error::ApiError;
use crate::routes::sites::{random_lower_alphanumeric, random_password};
use crate::task_args::TaskArgs;
use crate::views::{PackageView, SiteStatus};

/// The options of a site task, and warnings for its log.
pub struct Resolved {
    pub options: TaskOptions,
    pub warnings: Vec<String>,
}

pub async fn resolve(
    conn: &mut PgConnection,
    site: &SiteContext,
    task: TaskKind,
    args: &TaskArgs,
) -> Result<Resolved, ApiError> {
    let compression = args.compression.unwrap_or_default();
    let new_backup = || Some(BackupRef::new(site.uri.clone(), compression));
    let mut warnings = Vec::new();
    let options = match task {
        TaskKind::Backup => TaskOptions { new_backup: new_backup(), ..Default::default() },
        TaskKind::Delete if args.skip_backup => TaskOptions::default(),
        TaskKind::Delete => TaskOptions { new_backup: new_backup(), ..Default::default() },
        TaskKind::Restore => TaskOptions {
            from_backup: Some(backup_of(conn, site, args).await?),
            new_backup: new_backup(),
            ..Default::default()
        },
        TaskKind::BackupDelete => {
            TaskOptions { from_backup: Some(backup_of(conn, site, args).await?), ..Default::default() }
        }
        TaskKind::Clone => {
            let to = clone_target(conn, site, args).await?;
            TaskOptions { new_backup: new_backup(), to: Some(Box::new(to)), ..Default::default() }
        }
        TaskKind::Migrate => {
            let to = migrate_target(conn, site, args).await?;
            let problems = package_problems(conn, site, &to).await?;
            if !problems.is_empty() && !args.force {
                return Err(ApiError::conflict(
                    Some("platform"),
                    format!(
                        "`@{}` lacks what `@{}` uses: {}; install it on the platform and verify it, or migrate with \
                         `force` to go ahead anyway",
                        to.platform.name,
                        site.uri,
                        problems.join("; ")
                    ),
                ));
            }
            warnings.extend(problems.into_iter().map(|p| format!("migrating although {p}")));
            TaskOptions { new_backup: new_backup(), to: Some(Box::new(to)), ..Default::default() }
        }
        TaskKind::Verify if args.renew => {
            if site.ssl.is_off() {
                return Err(ApiError::invalid(
                    "renew",
                    format!(
                        "`{}` is not served over https, so it has no certificate to renew; save it with ssl first",
                        site.uri
                    ),
                ));
            }
            TaskOptions { renew_certificate: true, ..Default::default() }
        }
        _ => TaskOptions::default(),
    };
    Ok(Resolved { options, warnings })
}

/// The archive `args.backup`, which must be one of this site's.
async fn backup_of(conn: &mut PgConnection, site: &SiteContext, args: &TaskArgs) -> Result<BackupRef, ApiError> {
    let id = args.backup.ok_or_else(|| ApiError::invalid("backup", "`backup` is missing"))?;
    let row = db::backups::get(&mut *conn, id).await?;
    match row {
        Some(row) if row.site == site.uri.as_str() => Ok(row.reference()?),
        Some(row) => Err(ApiError::not_found_in(
            "backup",
            format!("backup `{id}` is an archive of `@{}`, not of `@{}`", row.site, site.uri),
        )),
        None => Err(ApiError::not_found_in(
            "backup",
            format!("backup `{id}` does not exist; `aegir backups @{}` lists the site's archives", site.uri),
        )),
    }
}

/// A platform as a task carries it, checked to be able to take `site`.
async fn platform_for(
    conn: &mut PgConnection,
    name: &PlatformName,
    site: &SiteContext,
) -> Result<(PlatformContext, PlatformType, Option<ServerContext>), ApiError> {
    let db::platforms::LockedForTask { platform: row, web_server, dns_server } =
        db::platforms::lock_for_task(conn, name, db::platforms::TaskOf::Site).await?.ok_or_else(|| {
            ApiError::not_found_in("platform", format!("platform `@{name}` does not exist; save it first"))
        })?;
    let Some(platform_type) = row.platform_type.clone() else {
        return Err(ApiError::invalid(
            "platform",
            format!(
                "platform `@{name}` has not been verified yet, so its kind of application is unknown; verify it first"
            ),
        ));
    };
    let platform_type: PlatformType = db::stored("platform type", platform_type)?;
    if platform_type != site.platform_type {
        return Err(ApiError::invalid(
            "platform",
            format!(
                "platform `@{name}` holds {platform_type} and `@{}` is a {} site; a site moves only to a platform of \
                 its own kind",
                site.uri, site.platform_type
            ),
        ));
    }
    if row.locked && name != &site.platform.name {
        return Err(ApiError::invalid(
            "platform",
            format!("platform `@{name}` is locked and takes no new sites; run `unlock` on it first"),
        ));
    }
    // Sites never need their platform's source: only platform tasks build it.
    let platform = PlatformContext {
        name: name.clone(),
        root: db::stored("path", row.root)?,
        web_server: web_server.try_into()?,
        source: None,
    };
    // The records of a site on it go to its web server's dns server.
    Ok((platform, platform_type, dns_server.map(ServerContext::try_from).transpose()?))
}

async fn server_context(conn: &mut PgConnection, name: &ServerName, field: &str) -> Result<ServerContext, ApiError> {
    let row = db::servers::context(conn, name)
        .await?
        .ok_or_else(|| ApiError::not_found_in(field, format!("server `@{name}` does not exist; save it first")))?;
    Ok(row.try_into()?)
}

async fn db_server_for(conn: &mut PgConnection, name: &ServerName) -> Result<ServerContext, ApiError> {
    let server = server_context(conn, name, "db_server").await?;
    if server.db.is_none() {
        return Err(ApiError::invalid(
            "db_server",
            format!("`@{name}` offers no database service; save it with `db` or choose another db_server"),
        ));
    }
    Ok(server)
}

/// No site or alias may already answer to `uri`.
async fn check_free(conn: &mut PgConnection, uri: &SiteUri) -> Result<(), ApiError> {
    db::sites::lock_names(conn).await?;
    if let Some(holder) = db::sites::holder_of_name(conn, uri.as_str(), uri).await? {
        return Err(ApiError::conflict(Some("new_uri"), format!("`{uri}` already names `@{holder}`")));
    }
    if db::sites::exists(&mut *conn, uri).await? {
        return Err(ApiError::conflict(Some("new_uri"), format!("site `@{uri}` exists already")));
    }
    Ok(())
}

/// The new site of a clone, saved now as `cloning` with its own database account; it
/// becomes `enabled` when the clone succeeds and is removed when it fails.
async fn clone_target(conn: &mut PgConnection, site: &SiteContext, args: &TaskArgs) -> Result<SiteContext, ApiError> {
    let uri = args.new_uri.clone().ok_or_else(|| ApiError::invalid("new_uri", "`new_uri` is missing"))?;
    check_free(conn, &uri).await?;
    let platform_name = args.platform.clone().unwrap_or_else(|| site.platform.name.clone());
    let (platform, platform_type, dns_server) = platform_for(conn, &platform_name, site).await?;
    let db_server = match &args.db_server {
        Some(name) => db_server_for(conn, name).await?,
        None => site.db_server.clone(),
    };
    let db_ident = DbIdent::for_site(&uri, &random_lower_alphanumeric(6));
    let password = random_password();
    let record = SiteRecord {
        uri: &uri,
        platform: &platform.name,
        db_server: &db_server.name,
        profile: site.profile.as_ref().map(|p| p.as_str()),
        language: site.language.as_str(),
        redirection: false,
        client: site.client.as_ref(),
        title: site.title.as_str(),
        admin_email: site.admin_email.as_str(),
        cron_interval: None,
        php_version: site.php_version.as_ref(),
        // The new uri gets a certificate of its own from the renewal queue.
        ssl: site.ssl,
    };
    db::sites::save(conn, &record, (&db_ident, &db_ident, &password)).await?;
    db::sites::set_status(conn, &uri, SiteStatus::Cloning, None).await?;
    Ok(SiteContext {
        uri,
        aliases: Vec::new(),
        redirection: false,
        platform,
        platform_type,
        db_server,
        dns_server,
        database: SiteDatabase { name: db_ident.clone(), user: db_ident, password: Secret::new(password) },
        ..site.clone()
    })
}

/// The site as it will be after the migrate; its database account stays its own.
async fn migrate_target(conn: &mut PgConnection, site: &SiteContext, args: &TaskArgs) -> Result<SiteContext, ApiError> {
    let mut to = site.clone();
    if let Some(uri) = &args.new_uri
        && uri != &site.uri
    {
        check_free(conn, uri).await?;
        to.uri = uri.clone();
        if site.aliases.contains(uri) {
            to.aliases.retain(|a| a != uri);
        }
    }
    if let Some(name) = &args.platform {
        let (platform, platform_type, dns_server) = platform_for(conn, name, site).await?;
        // The records follow the site to its new web server's dns server.
        to.dns_server = dns_server;
        to.platform = platform;
        to.platform_type = platform_type;
    }
    if let Some(name) = &args.db_server
        && name != &site.db_server.name
    {
        to.db_server = db_server_for(conn, name).await?;
        // A new account: the old one is dropped once the move succeeds, and the two
        // servers may be one MariaDB under two names.
        let db_ident = DbIdent::for_site(&to.uri, &random_lower_alphanumeric(6));
        let password = random_password();
        db::sites::set_moving_database(conn, &site.uri, Some((&db_ident, &db_ident, &password))).await?;
        to.database = SiteDatabase { name: db_ident.clone(), user: db_ident, password: Secret::new(password) };
    }
    if &to == site {
        return Err(ApiError::invalid(
            "platform",
            format!("`@{}` is already there: give a platform, db_server or new_uri it is not on", site.uri),
        ));
    }
    Ok(to)
}

/// What the target platform lacks or has older than the site uses: a package of the site
/// that came with its platform (site-local ones travel with the site) must be on the
/// target, at the same version or newer, and so must the application itself.
async fn package_problems(
    conn: &mut PgConnection,
    site: &SiteContext,
    to: &SiteContext,
) -> Result<Vec<String>, ApiError> {
    if to.platform.name == site.platform.name {
        return Ok(Vec::new());
    }
    let used = db::packages::of(&mut *conn, &format!("@{}", site.uri)).await?;
    let source = db::packages::of(&mut *conn, &format!("@{}", site.platform.name)).await?;
    let target = db::packages::of(&mut *conn, &format!("@{}", to.platform.name)).await?;
    Ok(compare_packages(&used, &source, &target))
}

fn compare_packages(used: &[PackageView], source: &[PackageView], target: &[PackageView]) -> Vec<String> {
    let find =
        |list: &[PackageView], p: &PackageView| list.iter().find(|q| q.kind == p.kind && q.name == p.name).cloned();
    let mut problems = Vec::new();
    // Core is compared between the platforms even when the site's list lacks it.
    let cores: Vec<PackageView> = source.iter().filter(|p| p.kind == "core").cloned().collect();
    let wanted = used.iter().cloned().chain(cores.into_iter().filter(|c| find(used, c).is_none()));
    for package in wanted {
        let from_platform = find(source, &package).is_some();
        match find(target, &package) {
            None if from_platform => {
                problems.push(format!("the target platform has no {} `{}`", package.kind, package.name))
            }
            None => {}
            Some(there) => {
                if let (Some(have), Some(there)) = (&package.version, &there.version)
                    && compare_versions(there, have) == Ordering::Less
                {
                    problems.push(format!(
                        "{} `{}` is {} on the target platform, older than the site's {}",
                        package.kind, package.name, there, have
                    ));
                }
            }
        }
    }
    problems
}

/// Compares dotted versions part by part, numbers as numbers (`6.10` > `6.9`); text
/// parts compare as text.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let parts = |v: &str| v.split(['.', '-', '+']).map(str::to_owned).collect::<Vec<_>>();
    let (a, b) = (parts(a), parts(b));
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i).map(String::as_str).unwrap_or("0"), b.get(i).map(String::as_str).unwrap_or("0"));
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(kind: &str, name: &str, version: Option<&str>) -> PackageView {
        PackageView { name: name.into(), kind: kind.into(), version: version.map(Into::into) }
    }

    #[test]
    fn versions_compare_by_number() {
        assert_eq!(compare_versions("6.10", "6.9"), Ordering::Greater);
        assert_eq!(compare_versions("6.4", "6.4.0"), Ordering::Equal);
        assert_eq!(compare_versions("1.39.3", "1.41.0"), Ordering::Less);
    }

    #[test]
    fn a_target_missing_or_older_is_a_problem_and_site_local_packages_are_not() {
        let source = vec![p("core", "wordpress", Some("6.4")), p("plugin", "akismet", Some("5.0"))];
        let used = vec![p("plugin", "akismet", Some("5.0")), p("plugin", "own-plugin", Some("1.0"))];
        let newer = vec![p("core", "wordpress", Some("6.5")), p("plugin", "akismet", Some("5.1"))];
        assert!(compare_packages(&used, &source, &newer).is_empty());

        let older = vec![p("core", "wordpress", Some("6.3")), p("plugin", "akismet", Some("5.0"))];
        let problems = compare_packages(&used, &source, &older);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("core `wordpress` is 6.3"), "{problems:?}");

        let lacking = vec![p("core", "wordpress", Some("6.4"))];
        let problems = compare_packages(&used, &source, &lacking);
        assert_eq!(problems, ["the target platform has no plugin `akismet`"]);
    }
}

//! `site database stats`: how big the site's database is. Reads only.

use aegir_contract::{SiteContext, SiteStats, StepFacts};
use aegir_worker::{StepError, StepLog};

use crate::mariadb::connect_admin;

pub async fn run(site: &SiteContext, log: &StepLog) -> Result<StepFacts, StepError> {
    let db = site.db_server.db.as_ref().ok_or_else(|| {
        StepError::permanent(format!(
            "{} has no db service; the site's database cannot be measured",
            site.db_server.name
        ))
    })?;
    let mut conn = connect_admin(db).await?;
    let (bytes, tables): (Option<i64>, i64) = sqlx::query_as(
        "SELECT CAST(SUM(DATA_LENGTH + INDEX_LENGTH) AS SIGNED), COUNT(*) FROM information_schema.TABLES
         WHERE TABLE_SCHEMA = ?",
    )
    .bind(site.database.name.as_str())
    .fetch_one(&mut conn)
    .await
    .map_err(|e| StepError::transient(format!("cannot measure database `{}`: {e}", site.database.name)))?;
    let bytes = u64::try_from(bytes.unwrap_or(0)).unwrap_or(0);
    log.info(format!("database `{}`: {tables} tables, {bytes} bytes", site.database.name)).await;
    let stats = SiteStats {
        database_bytes: Some(bytes),
        database_tables: Some(u32::try_from(tables).unwrap_or(u32::MAX)),
        ..SiteStats::default()
    };
    Ok(StepFacts { stats: Some(stats), ..StepFacts::default() })
}

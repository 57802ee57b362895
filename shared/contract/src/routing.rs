//! Where work goes: `<server>.<service>`, e.g. `server_master.db`.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::context::str_enum;
use crate::names::{NameError, ServerName};

/// A service a server runs; each has its own worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    Http,
    Db,
    Backup,
    Dns,
}

str_enum!(ServiceKind, "service", "use `http`, `db`, `backup` or `dns`", {
    Http => "http",
    Db => "db",
    Backup => "backup",
    Dns => "dns",
});

/// Which of a worker's two queues a step waits in. A worker takes the next step from the
/// interactive lane whenever it has one, so what people ask for never waits behind the
/// scheduled queues (cron, stats, backups) or a fleet-wide batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    /// Asked for by a person or a program, one task at a time.
    #[default]
    Interactive,
    /// Started by a scheduled queue or a batch.
    Bulk,
}

str_enum!(Lane, "lane", "use `interactive` or `bulk`", {
    Interactive => "interactive",
    Bulk => "bulk",
});

impl Lane {
    pub fn is_interactive(&self) -> bool {
        *self == Lane::Interactive
    }
}

/// The queue a step is sent to: one server's one service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    pub server: ServerName,
    pub service: ServiceKind,
}

impl Route {
    pub fn new(server: ServerName, service: ServiceKind) -> Self {
        Self { server, service }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.server, self.service)
    }
}

impl FromStr for Route {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let refuse = || NameError {
            kind: "route",
            value: s.to_owned(),
            rule: "use `<server>.<service>`, e.g. `server_master.db`",
        };
        let (server, service) = s.split_once('.').ok_or_else(refuse)?;
        Ok(Self {
            server: ServerName::parse(server).map_err(|_| refuse())?,
            service: service.parse().map_err(|_| refuse())?,
        })
    }
}

impl Serialize for Route {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Route {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Route {
    fn schema_name() -> Cow<'static, str> {
        "Route".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^server_[a-z0-9_]{1,48}\\.(http|db|backup|dns)$",
            "description": "`<server>.<service>`: the work queue of one service on one server."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_round_trip() {
        let r: Route = "server_master.db".parse().unwrap();
        assert_eq!(r.service, ServiceKind::Db);
        assert_eq!(r.to_string(), "server_master.db");
        assert!("server_master.ftp".parse::<Route>().is_err());
        assert!("master.db".parse::<Route>().is_err());
        assert!("server_master".parse::<Route>().is_err());
    }
}

//! Any PHP application: the site's directory holds its settings only (the database
//! account, read from the web server); there is no installer.

use std::path::Path;

use aegir_contract::{Package, Secret};

use super::{ENV_READER, Platform, Rendered, SiteFiles, WRITTEN_BY};
use crate::php::PhpRun;

pub struct Php;

impl Platform for Php {
    fn settings(&self, site: &SiteFiles) -> Vec<Rendered> {
        let contents = format!(
            "<?php\n\
             // {WRITTEN_BY}: the settings of {uri}. Changes here are overwritten at verify.\n\
             // The database account comes from the web server (or the environment of a CLI run).\n\
             {ENV_READER}\n\
             return array(\n  \
               'uri' => $aegir_env('AEGIR_SITE_URI'),\n  \
               'db_name' => $aegir_env('AEGIR_DB_NAME'),\n  \
               'db_user' => $aegir_env('AEGIR_DB_USER'),\n  \
               'db_password' => $aegir_env('AEGIR_DB_PASSWORD'),\n  \
               'db_host' => $aegir_env('AEGIR_DB_HOST'),\n  \
               'db_port' => $aegir_env('AEGIR_DB_PORT'),\n\
             );\n",
            uri = site.site.uri,
        );
        vec![Rendered { path: site.site_dir.join("settings.php"), contents }]
    }

    fn installer(&self, _: &SiteFiles, _: Vec<(&'static str, Secret)>, _: &Secret) -> Option<PhpRun> {
        None
    }

    fn login_link(&self, _: &SiteFiles, _: Vec<(&'static str, Secret)>) -> Option<PhpRun> {
        None
    }

    fn cron(&self, _: &SiteFiles, _: Vec<(&'static str, Secret)>) -> Option<PhpRun> {
        None
    }

    fn packages(&self, _root: &Path, _site_dir: Option<&Path>) -> Vec<Package> {
        Vec::new()
    }
}

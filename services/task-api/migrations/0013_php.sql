-- PHP per site: the PHP versions a server verify finds installed on a web server (its
-- php-fpm packages) and the one its sites run by default, and the version a site chose.
ALTER TABLE servers
    ADD COLUMN php_versions text[],
    ADD COLUMN php_default_version text;

-- NULL: the web server's default version.
ALTER TABLE sites ADD COLUMN php_version text;

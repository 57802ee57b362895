-- Where the certificate a site serves came from: `acme` (ordered and renewed by the
-- renewal queue) or `user` (supplied by its owner: never ordered over ACME, shown as
-- `expiring` near its end); NULL while the site has none. The key of a supplied
-- certificate is never stored here: it travels to the web server only inside the
-- request of the task that installs it, which the scheduler drops once the task ends.
ALTER TABLE sites ADD COLUMN ssl_source text CHECK (ssl_source IN ('acme', 'user'));

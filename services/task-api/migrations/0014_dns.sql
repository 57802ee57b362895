-- DNS: a server's name service (`bind`, with its version from the last verify), and the
-- server whose name service keeps the records of a web server's sites (NULL: the server
-- itself when it offers dns, else none).
ALTER TABLE servers
    ADD COLUMN dns_service_type text,
    ADD COLUMN dns_version text,
    ADD COLUMN dns_server text REFERENCES servers (name) ON UPDATE CASCADE;

CREATE INDEX servers_dns_server ON servers (dns_server) WHERE dns_server IS NOT NULL;

//! The records the system keeps, zone by zone, and how a zone file is written from them.
//! Pure: no files, no programs, so every rule here is tested on its own.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The type and data of one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum RecordData {
    A(std::net::Ipv4Addr),
    #[serde(rename = "AAAA")]
    Aaaa(std::net::Ipv6Addr),
    /// A host name, without the final dot.
    #[serde(rename = "CNAME")]
    Cname(String),
}

impl RecordData {
    pub fn render(&self) -> String {
        match self {
            RecordData::A(ip) => format!("A\t{ip}"),
            RecordData::Aaaa(ip) => format!("AAAA\t{ip}"),
            RecordData::Cname(host) => format!("CNAME\t{host}."),
        }
    }
}

/// A record for a name, kept for the site it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The uri of the site whose uri or alias the name is.
    pub site: String,
    pub data: Vec<RecordData>,
}

/// Everything the system keeps in one zone: what its zone file is written from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneState {
    /// The serial of the zone file last written.
    pub serial: u32,
    /// Records by name (a full name, no final dot).
    pub records: BTreeMap<String, Record>,
}

/// The SOA and NS of every zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSettings {
    /// The name server named in the zones' NS and SOA records, without the final dot.
    pub nameserver: String,
    pub ttl: u32,
}

/// A serial higher than `previous`: the time now when it is, else the next number. Name
/// servers that copy the zone take only a higher serial, so it never goes back, even
/// when several changes come within one second or the clock is set back.
pub fn next_serial(previous: u32, now_unix: i64) -> u32 {
    let now = u32::try_from(now_unix.max(0)).unwrap_or(u32::MAX);
    now.max(previous.saturating_add(1))
}

/// Whether `name` is `zone` or a name under it.
pub fn is_in_zone(name: &str, zone: &str) -> bool {
    name == zone || name.strip_suffix(zone).is_some_and(|rest| rest.ends_with('.'))
}

/// The zone a name of `site` goes in: the longest of the configured zones it is in;
/// else the site's own zone (named by its uri) when the name is the uri or under it;
/// else a zone of its own (a customer's own domain given as an alias).
pub fn zone_for(name: &str, site: &str, configured: &[String]) -> String {
    configured
        .iter()
        .filter(|zone| is_in_zone(name, zone))
        .max_by_key(|zone| zone.len())
        .cloned()
        .unwrap_or_else(|| if is_in_zone(name, site) { site.to_owned() } else { name.to_owned() })
}

/// The records a name gets to reach the web server at `remote_host`: `A` or `AAAA` to
/// an address; a `CNAME` to a host name, except at a zone's apex (where a CNAME cannot
/// be, beside the SOA and NS), which gets the host's addresses.
pub fn records_for(remote_host: &str, at_apex: bool, resolved: &[IpAddr]) -> Vec<RecordData> {
    match remote_host.parse::<IpAddr>() {
        Ok(ip) => vec![address(ip)],
        Err(_) if at_apex => {
            let mut data: Vec<RecordData> = resolved.iter().copied().map(address).collect();
            data.dedup();
            data
        }
        Err(_) => vec![RecordData::Cname(remote_host.trim_end_matches('.').to_owned())],
    }
}

fn address(ip: IpAddr) -> RecordData {
    match ip {
        IpAddr::V4(ip) => RecordData::A(ip),
        IpAddr::V6(ip) => RecordData::Aaaa(ip),
    }
}

/// The zone file of `zone`.
pub fn render(zone: &str, state: &ZoneState, settings: &ZoneSettings) -> String {
    let ns = &settings.nameserver;
    let mut text = format!(
        "; Written by the dns-worker from the sites' records; changes here are overwritten.\n\
         $ORIGIN {zone}.\n\
         $TTL {ttl}\n\
         @\tIN\tSOA\t{ns}. hostmaster.{zone}. ( {serial} 3600 600 1209600 {ttl} )\n\
         @\tIN\tNS\t{ns}.\n",
        ttl = settings.ttl,
        serial = state.serial,
    );
    for (name, record) in &state.records {
        for data in &record.data {
            text.push_str(&format!("{name}.\tIN\t{}\t; {}\n", data.render(), record.site));
        }
    }
    text
}

/// The `named.conf` include that declares every zone, each read from its file in `dir`.
pub fn render_include(dir: &str, zones: &[String]) -> String {
    let mut text =
        String::from("// Written by the dns-worker: the zones of the sites' records. Include it from named.conf.\n");
    for zone in zones {
        text.push_str(&format!("zone \"{zone}\" {{ type primary; file \"{dir}/{}\"; }};\n", zone_file_name(zone)));
    }
    text
}

pub fn zone_file_name(zone: &str) -> String {
    format!("db.{zone}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones(list: &[&str]) -> Vec<String> {
        list.iter().map(|z| (*z).to_owned()).collect()
    }

    #[test]
    fn a_name_goes_into_the_longest_configured_zone_it_is_in() {
        let configured = zones(&["example.com", "shop.example.com", "example.org"]);
        assert_eq!(zone_for("www.example.com", "www.example.com", &configured), "example.com");
        assert_eq!(zone_for("a.shop.example.com", "a.shop.example.com", &configured), "shop.example.com");
        assert_eq!(zone_for("example.org", "example.org", &configured), "example.org");
        // A suffix that is not a whole label is not in the zone.
        assert_eq!(zone_for("myexample.com", "myexample.com", &configured), "myexample.com");
    }

    #[test]
    fn a_name_outside_every_zone_gets_the_sites_own_zone_or_one_of_its_own() {
        let configured = zones(&["example.com"]);
        assert_eq!(zone_for("customer.net", "customer.net", &configured), "customer.net");
        assert_eq!(zone_for("www.customer.net", "customer.net", &configured), "customer.net");
        assert_eq!(zone_for("other.org", "customer.net", &configured), "other.org");
        assert_eq!(zone_for("www.example.com", "customer.net", &configured), "example.com");
    }

    #[test]
    fn addresses_get_a_and_aaaa_host_names_a_cname_except_at_the_apex() {
        assert_eq!(records_for("192.0.2.7", false, &[]), vec![RecordData::A("192.0.2.7".parse().unwrap())]);
        assert_eq!(records_for("2001:db8::7", true, &[]), vec![RecordData::Aaaa("2001:db8::7".parse().unwrap())]);
        assert_eq!(records_for("web1.example.net", false, &[]), vec![RecordData::Cname("web1.example.net".into())]);
        let resolved: Vec<IpAddr> = vec!["192.0.2.8".parse().unwrap(), "2001:db8::8".parse().unwrap()];
        assert_eq!(
            records_for("web1.example.net", true, &resolved),
            vec![RecordData::A("192.0.2.8".parse().unwrap()), RecordData::Aaaa("2001:db8::8".parse().unwrap())]
        );
    }

    #[test]
    fn the_serial_always_increases() {
        assert_eq!(next_serial(0, 1_700_000_000), 1_700_000_000);
        assert_eq!(next_serial(1_700_000_000, 1_700_000_000), 1_700_000_001);
        // The clock went back: still higher than the last one.
        assert_eq!(next_serial(1_800_000_000, 1_700_000_000), 1_800_000_001);
    }

    #[test]
    fn a_zone_file_has_its_soa_ns_and_each_record_with_its_site() {
        let mut state = ZoneState { serial: 1_700_000_123, ..Default::default() };
        state.records.insert(
            "www.example.com".into(),
            Record { site: "www.example.com".into(), data: vec![RecordData::A("192.0.2.7".parse().unwrap())] },
        );
        state.records.insert(
            "shop.example.com".into(),
            Record { site: "www.example.com".into(), data: vec![RecordData::Cname("web1.example.net".into())] },
        );
        let settings = ZoneSettings { nameserver: "ns1.example.net".into(), ttl: 300 };
        let text = render("example.com", &state, &settings);
        assert!(text.contains("$ORIGIN example.com.\n"), "{text}");
        assert!(text.contains("@\tIN\tSOA\tns1.example.net. hostmaster.example.com. ( 1700000123 3600"), "{text}");
        assert!(text.contains("@\tIN\tNS\tns1.example.net.\n"), "{text}");
        assert!(text.contains("www.example.com.\tIN\tA\t192.0.2.7\t; www.example.com\n"), "{text}");
        assert!(text.contains("shop.example.com.\tIN\tCNAME\tweb1.example.net.\t; www.example.com\n"), "{text}");
    }

    #[test]
    fn the_include_declares_each_zone_with_its_file() {
        let text = render_include("/var/lib/aegir/dns", &zones(&["example.com"]));
        assert!(text.contains("zone \"example.com\" { type primary; file \"/var/lib/aegir/dns/db.example.com\"; };"));
    }
}

//! The device arguments of `apus ring`, with `swift-ring-builder`'s syntax.
//!
//! * add values: `[r<region>]z<zone>-<ip>:<port>[R<ip>:<port>]/<device>[_<meta>]`
//! * search values: `d<id>r<region>z<zone>-<ip>:<port>R<ip>:<port>/<device>_<meta>`,
//!   every part optional but at least one present.
//!
//! IPs are normalized as Swift does (lowercase; IPv6 in canonical form),
//! so that searches match what `add` stored.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::device::Device;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ParseError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

/// A device described by an add value; region and replication address are
/// `None` when the value leaves them out, so the caller can default them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddValue {
    pub region: Option<u32>,
    pub zone: u32,
    pub ip: String,
    pub port: u16,
    pub replication_ip: Option<String>,
    pub replication_port: Option<u16>,
    pub device: String,
    pub meta: String,
}

/// Which devices a search value selects: every field given must match; the
/// meta field matches as a substring.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DevMatch {
    pub id: Option<u32>,
    pub region: Option<u32>,
    pub zone: Option<u32>,
    pub ip: Option<String>,
    pub port: Option<u16>,
    pub replication_ip: Option<String>,
    pub replication_port: Option<u16>,
    pub device: Option<String>,
    pub meta: Option<String>,
}

impl DevMatch {
    pub fn matches(&self, dev: &Device) -> bool {
        self.id.is_none_or(|v| v == dev.id)
            && self.region.is_none_or(|v| v == dev.region)
            && self.zone.is_none_or(|v| v == dev.zone)
            && self.ip.as_ref().is_none_or(|v| *v == dev.ip)
            && self.port.is_none_or(|v| v == dev.port)
            && self
                .replication_ip
                .as_ref()
                .is_none_or(|v| *v == dev.replication_ip)
            && self
                .replication_port
                .is_none_or(|v| v == dev.replication_port)
            && self.device.as_ref().is_none_or(|v| *v == dev.device)
            && self
                .meta
                .as_ref()
                .is_none_or(|v| dev.meta.contains(v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        *self == DevMatch::default()
    }
}

/// Splits a leading run of characters accepted by `keep` off `s`.
fn take_while(s: &str, keep: impl Fn(char) -> bool) -> (&str, &str) {
    let end = s
        .char_indices()
        .find(|&(_, c)| !keep(c))
        .map_or(s.len(), |(i, _)| i);
    s.split_at(end)
}

/// `<letter><digits>` at the start of `s`, if `s` starts with `letter`.
fn prefixed_number<'a>(
    s: &'a str,
    letter: char,
    what: &str,
) -> Result<(Option<u32>, &'a str), ParseError> {
    let Some(rest) = s.strip_prefix(letter) else {
        return Ok((None, s));
    };
    let (digits, rest) = take_while(rest, |c| c.is_ascii_digit());
    match digits.parse() {
        Ok(n) => Ok((Some(n), rest)),
        Err(_) => err(format!("invalid {what} {:?}", format!("{letter}{digits}"))),
    }
}

/// Lowercases and validates an IP; IPv6 comes out in canonical form.
pub fn normalize_ip(ip: &str) -> Result<String, ParseError> {
    let lower = ip.to_ascii_lowercase();
    if lower.parse::<Ipv4Addr>().is_ok() {
        return Ok(lower);
    }
    match lower.parse::<Ipv6Addr>() {
        Ok(v6) => Ok(v6.to_string()),
        Err(_) => err(format!("invalid ip {ip:?}")),
    }
}

/// Like [`normalize_ip`], but a valid hostname is accepted too (the long
/// `--ip` form allows one), and `[v6]` brackets are removed.
pub fn normalize_address(address: &str) -> Result<String, ParseError> {
    let bare = address.trim_start_matches('[').trim_end_matches(']');
    if address.starts_with('[') && address.ends_with(']') {
        return normalize_ip(bare);
    }
    if let Ok(ip) = normalize_ip(bare) {
        return Ok(ip);
    }
    let lower = bare.to_ascii_lowercase();
    if is_valid_hostname(&lower) {
        Ok(lower)
    } else {
        err(format!("invalid address {address:?}"))
    }
}

fn is_valid_hostname(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

pub fn validate_device_name(name: &str) -> Result<(), ParseError> {
    if name.is_empty() || name.starts_with(' ') || name.ends_with(' ') {
        return err(format!("invalid device name {name:?}"));
    }
    if name.contains('/') || name == "." || name == ".." {
        return err(format!(
            "invalid device name {name:?}: it names a directory"
        ));
    }
    Ok(())
}

/// `ip:port` (IPv6 in brackets) up to the next `R` or `/`.
fn parse_address(s: &str) -> Result<(String, u16, &str), ParseError> {
    let (address, rest) = take_while(s, |c| c != 'R' && c != '/');
    let address = if address.starts_with('[') {
        address.replacen('[', "", 1).replacen(']', "", 1)
    } else {
        address.to_string()
    };
    let Some(colon) = address.rfind(':') else {
        return err(format!("missing port in {address:?}"));
    };
    let port = address[colon + 1..]
        .parse::<u16>()
        .or_else(|_| err(format!("invalid port {:?}", &address[colon + 1..])))?;
    Ok((normalize_ip(&address[..colon])?, port, rest))
}

/// Parses `r1z1-127.0.0.1:6200R127.0.0.1:6300/d1_meta`.
pub fn parse_add_value(value: &str) -> Result<AddValue, ParseError> {
    let invalid = || ParseError(format!("invalid add value {value:?}"));
    let (region, rest) = prefixed_number(value, 'r', "region")?;
    if !rest.starts_with('z') {
        return Err(invalid());
    }
    let (zone, rest) = prefixed_number(rest, 'z', "zone")?;
    let rest = rest.strip_prefix('-').ok_or_else(invalid)?;
    let (ip, port, rest) = parse_address(rest)?;
    let (replication_ip, replication_port, rest) = match rest.strip_prefix('R') {
        Some(r) => {
            let (rip, rport, rest) = parse_address(r)?;
            (Some(rip), Some(rport), rest)
        }
        None => (None, None, rest),
    };
    let rest = rest.strip_prefix('/').ok_or_else(invalid)?;
    let (device, meta) = match rest.split_once('_') {
        Some((d, m)) => (d, m),
        None => (rest, ""),
    };
    validate_device_name(device)?;
    Ok(AddValue {
        region,
        zone: zone.ok_or_else(invalid)?,
        ip,
        port,
        replication_ip,
        replication_port,
        device: device.to_string(),
        meta: meta.to_string(),
    })
}

fn take_ip(s: &str) -> Result<(Option<String>, &str), ParseError> {
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        let (ip, rest) = take_while(s, |c| c.is_ascii_digit() || c == '.');
        Ok((Some(normalize_ip(ip)?), rest))
    } else if let Some(inner) = s.strip_prefix('[') {
        let Some((ip, rest)) = inner.split_once(']') else {
            return err(format!("unclosed [ in {s:?}"));
        };
        Ok((Some(normalize_ip(ip)?), rest))
    } else {
        Ok((None, s))
    }
}

fn take_port(s: &str) -> Result<(Option<u16>, &str), ParseError> {
    let Some(rest) = s.strip_prefix(':') else {
        return Ok((None, s));
    };
    let (digits, rest) = take_while(rest, |c| c.is_ascii_digit());
    match digits.parse() {
        Ok(p) => Ok((Some(p), rest)),
        Err(_) => err(format!("invalid port {digits:?}")),
    }
}

/// Parses a search value such as `d74`, `z1-10.0.0.1:6200` or `/sdb1`.
pub fn parse_search_value(value: &str) -> Result<DevMatch, ParseError> {
    let mut m = DevMatch::default();
    let (id, rest) = prefixed_number(value, 'd', "device id")?;
    m.id = id;
    let (region, rest) = prefixed_number(rest, 'r', "region")?;
    m.region = region;
    let (zone, rest) = prefixed_number(rest, 'z', "zone")?;
    m.zone = zone;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let (ip, rest) = take_ip(rest)?;
    m.ip = ip;
    let (port, mut rest) = take_port(rest)?;
    m.port = port;
    if let Some(r) = rest.strip_prefix('R') {
        let (rip, r) = take_ip(r)?;
        let (rport, r) = take_port(r)?;
        m.replication_ip = rip;
        m.replication_port = rport;
        rest = r;
    }
    if let Some(r) = rest.strip_prefix('/') {
        let (device, r) = take_while(r, |c| c != '_');
        m.device = Some(device.to_string());
        rest = r;
    }
    if let Some(meta) = rest.strip_prefix('_') {
        m.meta = Some(meta.to_string());
        rest = "";
    }
    if !rest.is_empty() || m.is_empty() {
        return err(format!("invalid search value {value:?}"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_value_full_form() {
        let v = parse_add_value("r1z2-127.0.0.1:6200R127.0.0.2:6300/d1_some meta").unwrap();
        assert_eq!(
            v,
            AddValue {
                region: Some(1),
                zone: 2,
                ip: "127.0.0.1".into(),
                port: 6200,
                replication_ip: Some("127.0.0.2".into()),
                replication_port: Some(6300),
                device: "d1".into(),
                meta: "some meta".into(),
            }
        );
    }

    #[test]
    fn add_value_short_and_v6() {
        let v = parse_add_value("z1-[FE80::0001]:6200/sdb").unwrap();
        assert_eq!(v.region, None);
        assert_eq!(v.ip, "fe80::1");
        assert_eq!(v.replication_ip, None);
        assert_eq!(v.meta, "");
    }

    #[test]
    fn add_value_errors() {
        for bad in [
            "",
            "r1",
            "r1z1",
            "r1z1-127.0.0.1/d1",
            "r1z1-127.0.0.1:port/d1",
            "r1z1-127.0.0.1:70000/d1",
            "r1z1-999.0.0.1:6200/d1",
            "r1z1-127.0.0.1:6200",
            "r1z1-127.0.0.1:6200/",
            "rXz1-127.0.0.1:6200/d1",
            "r1z-127.0.0.1:6200/d1",
            "r1z1-host:6200/d1",
            "r1z1-127.0.0.1:6200R/d1",
        ] {
            assert!(parse_add_value(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn search_values() {
        let m = parse_search_value("d74r4z1-1.2.3.4:5678R5.6.7.8:9/sdb1_snet").unwrap();
        assert_eq!(m.id, Some(74));
        assert_eq!(m.region, Some(4));
        assert_eq!(m.zone, Some(1));
        assert_eq!(m.ip.as_deref(), Some("1.2.3.4"));
        assert_eq!(m.port, Some(5678));
        assert_eq!(m.replication_ip.as_deref(), Some("5.6.7.8"));
        assert_eq!(m.replication_port, Some(9));
        assert_eq!(m.device.as_deref(), Some("sdb1"));
        assert_eq!(m.meta.as_deref(), Some("snet"));
        assert_eq!(parse_search_value(":6200").unwrap().port, Some(6200));
        assert_eq!(
            parse_search_value("[::1]").unwrap().ip.as_deref(),
            Some("::1")
        );
        for bad in ["", "x", "d", "z1x", "1.2.3.4.5"] {
            assert!(parse_search_value(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn search_matches_devices() {
        let dev = Device {
            id: 3,
            region: 1,
            zone: 2,
            ip: "10.0.0.1".into(),
            port: 6200,
            replication_ip: "10.0.0.1".into(),
            replication_port: 6200,
            device: "sdb".into(),
            weight: 1.0,
            meta: "rack 7".into(),
        };
        assert!(parse_search_value("d3").unwrap().matches(&dev));
        assert!(parse_search_value("z2-10.0.0.1").unwrap().matches(&dev));
        assert!(parse_search_value("_rack").unwrap().matches(&dev));
        assert!(!parse_search_value("z1").unwrap().matches(&dev));
        assert!(!parse_search_value("/sdc").unwrap().matches(&dev));
    }

    #[test]
    fn addresses() {
        assert_eq!(
            normalize_address("Storage-1.Example").unwrap(),
            "storage-1.example"
        );
        assert_eq!(normalize_address("[::1]").unwrap(), "::1");
        assert!(normalize_address("-bad-").is_err());
        assert!(normalize_address("[host]").is_err());
    }
}

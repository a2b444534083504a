//! How certificates are shown to people and to scripts.

use meshca_core::cert::Certificate;
use meshca_core::validate::{Parsed, Verified};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn days_left(c: &Certificate, now: OffsetDateTime) -> i64 {
    (c.not_after - now).whole_days()
}

fn cert_json(c: &Certificate, now: OffsetDateTime) -> Value {
    json!({
        "subject": c.subject,
        "issuer": c.issuer,
        "serial": c.serial,
        "not_before": rfc3339(c.not_before),
        "not_after": rfc3339(c.not_after),
        "days_left": days_left(c, now),
        "is_ca": c.is_ca,
        "path_len": c.path_len,
        "key_algorithm": c.key_algorithm.as_ref().map(ToString::to_string).unwrap_or_else(|e| e.clone()),
        "fingerprint_sha256": c.sha256_fingerprint,
    })
}

pub fn verified_json(v: &Verified, now: OffsetDateTime) -> Value {
    json!({
        "ca_cert": cert_json(&v.ca_cert, now),
        "chain": v.chain.iter().map(|c| cert_json(c, now)).collect::<Vec<_>>(),
        "roots": v.roots.iter().map(|c| cert_json(c, now)).collect::<Vec<_>>(),
        "key_algorithm": v.key_algorithm.to_string(),
    })
}

pub fn parsed_json(p: &Parsed, now: OffsetDateTime) -> Value {
    json!({
        "ca_cert": p.ca_cert.first().map(|c| cert_json(c, now)),
        "chain": p.chain.iter().map(|c| cert_json(c, now)).collect::<Vec<_>>(),
        "roots": p.roots.iter().map(|c| cert_json(c, now)).collect::<Vec<_>>(),
    })
}

fn print_cert(c: &Certificate, now: OffsetDateTime) {
    println!("  subject      {}", c.subject);
    println!("  issuer       {}", c.issuer);
    println!("  serial       {}", c.serial);
    println!(
        "  not after    {} ({} days left)",
        rfc3339(c.not_after),
        days_left(c, now)
    );
    let pathlen = c
        .path_len
        .map_or_else(|| "none".to_string(), |p| p.to_string());
    let key = c
        .key_algorithm
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|e| e.clone());
    println!(
        "  ca           {} (pathlen {pathlen}), key {key}",
        if c.is_ca { "yes" } else { "no" }
    );
    println!("  sha256       {}", c.fingerprint_openssl());
}

fn print_chain(chain: &[Certificate], now: OffsetDateTime) {
    println!("  chain");
    for (i, c) in chain.iter().enumerate() {
        let tag = if c.subject == c.issuer { " (root)" } else { "" };
        println!(
            "    {i}  {}{tag}  [until {}, {} days]",
            c.subject,
            c.not_after.date(),
            days_left(c, now)
        );
    }
}

pub fn print_verified(v: &Verified, now: OffsetDateTime) {
    print_cert(&v.ca_cert, now);
    print_chain(&v.chain, now);
}

pub fn print_parsed(p: &Parsed, now: OffsetDateTime) {
    if let Some(c) = p.ca_cert.first() {
        print_cert(c, now);
    }
    print_chain(&p.chain, now);
}

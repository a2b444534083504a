//! Instants as people and logs read them: RFC 3339 (`2027-06-30T00:00:00Z`), the form every
//! message, annotation and report of meshca uses, never the `time` crate's debug-like default.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `t` in RFC 3339, UTC as `Z`, to the second (fractions help nobody reading a report).
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    #[test]
    fn utc_and_offsets_print_as_rfc3339_in_utc() {
        assert_eq!(
            super::rfc3339(datetime!(2027-06-30 0:00 UTC)),
            "2027-06-30T00:00:00Z"
        );
        assert_eq!(
            super::rfc3339(datetime!(2027-06-30 2:00 +2)),
            "2027-06-30T00:00:00Z"
        );
        assert_eq!(
            super::rfc3339(datetime!(2027-06-30 0:00:01.75 UTC)),
            "2027-06-30T00:00:01Z"
        );
    }
}

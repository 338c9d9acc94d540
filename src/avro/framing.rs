//! The Confluent wire format of a Kafka key or value: magic byte `0x00`, the 4-byte big-endian
//! schema id from the schema registry, then the Avro binary datum.
//!
//! Byte-compatible with `schema_registry_converter`'s `get_payload` (framing) and
//! `get_bytes_result` (unframing), which the tests check.

/// The magic byte that starts every Confluent-framed payload.
pub const MAGIC_BYTE: u8 = 0;

/// Length of the header (magic byte + schema id).
pub const HEADER_LEN: usize = 5;

/// Why a payload is not a Confluent-framed record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// No bytes at all (a tombstone is a *missing* value, handled before unframing).
    #[error("empty payload: expected the Confluent wire format (magic byte 0x00, 4-byte schema id, Avro datum)")]
    Empty,
    /// The first byte is not the magic byte: the payload was not written by a schema-registry
    /// serializer (plain JSON starts with `0x7b`, `{`).
    #[error("wrong magic byte {found:#04x}, expected 0x00: the payload is not in the Confluent wire format")]
    WrongMagicByte {
        /// The byte found.
        found: u8,
    },
    /// Fewer than 5 bytes: the schema id is cut off.
    #[error("payload too short ({len} bytes): the Confluent wire format needs at least 5 (magic byte and 4-byte schema id)")]
    TooShort {
        /// The payload's length.
        len: usize,
    },
}

/// Appends the 5-byte header for `schema_id` to `out`.
pub fn write_header(schema_id: u32, out: &mut Vec<u8>) {
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
}

/// A framed payload: header for `schema_id`, then `datum`.
pub fn frame(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
    frame_into(schema_id, datum, &mut out);
    out
}

/// Appends a framed payload (header for `schema_id`, then `datum`) to `out`, for a reused buffer.
pub fn frame_into(schema_id: u32, datum: &[u8], out: &mut Vec<u8>) {
    out.reserve(HEADER_LEN + datum.len());
    write_header(schema_id, out);
    out.extend_from_slice(datum);
}

/// Splits a framed payload into its schema id and its datum (borrowed).
pub fn unframe(bytes: &[u8]) -> Result<(u32, &[u8]), FramingError> {
    match bytes {
        [] => Err(FramingError::Empty),
        [magic, ..] if *magic != MAGIC_BYTE => Err(FramingError::WrongMagicByte { found: *magic }),
        [_, a, b, c, d, datum @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), datum)),
        short => Err(FramingError::TooShort { len: short.len() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema_registry_converter::schema_registry_common::{
        get_bytes_result, get_payload, BytesResult,
    };

    #[test]
    fn frames_like_schema_registry_converter() {
        for (id, datum) in [
            (0u32, vec![]),
            (1, vec![0x02, 0x41]),
            (0x0102_0304, vec![9; 300]),
            (u32::MAX, vec![0]),
        ] {
            let ours = frame(id, &datum);
            assert_eq!(ours, get_payload(id, datum.clone()), "id {id}");
            let mut reused = vec![0xAA];
            frame_into(id, &datum, &mut reused);
            assert_eq!(reused[1..], ours[..]);
            assert_eq!(unframe(&ours), Ok((id, &datum[..])));
        }
        assert_eq!(frame(0x0102_0304, &[7]), vec![0, 1, 2, 3, 4, 7]);
    }

    #[test]
    fn unframes_like_schema_registry_converter() {
        let payloads: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0, 0, 1],
            vec![0, 0, 0, 0, 1],
            vec![0, 0, 0, 0, 1, 2, 3],
            vec![1, 0, 0, 0, 1, 2],
            b"{\"a\":1}".to_vec(),
            vec![0, 0xFF, 0xFF, 0xFF, 0xFF],
        ];
        for payload in &payloads {
            let theirs = get_bytes_result(Some(payload));
            match (unframe(payload), theirs) {
                (Ok((id, datum)), BytesResult::Valid(their_id, their_datum)) => {
                    assert_eq!((id, datum), (their_id, their_datum));
                }
                (Err(_), BytesResult::Invalid(_)) => {}
                (ours, _) => panic!("{payload:?}: ours {ours:?}, theirs disagrees"),
            }
        }
    }

    #[test]
    fn errors_are_distinct_and_say_what_was_found() {
        assert_eq!(unframe(&[]), Err(FramingError::Empty));
        assert_eq!(
            unframe(b"{\"a\":1}"),
            Err(FramingError::WrongMagicByte { found: b'{' })
        );
        assert_eq!(unframe(&[0, 0, 1]), Err(FramingError::TooShort { len: 3 }));
        assert_eq!(unframe(&[0, 0, 0, 0, 42]), Ok((42, &[][..])));
        assert_eq!(
            FramingError::WrongMagicByte { found: 0x7b }.to_string(),
            "wrong magic byte 0x7b, expected 0x00: the payload is not in the Confluent wire format"
        );
        assert_eq!(
            FramingError::TooShort { len: 3 }.to_string(),
            "payload too short (3 bytes): the Confluent wire format needs at least 5 (magic byte and 4-byte schema id)"
        );
        assert!(FramingError::Empty.to_string().starts_with("empty payload"));
    }
}

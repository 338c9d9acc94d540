//! Confluent framing + Avro decode of every fluxo schema: the first byte picks the schema, the
//! rest is a framed payload as it comes from Kafka.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fluxo::fuzzing::avro_decode(data));

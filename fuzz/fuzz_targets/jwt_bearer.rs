//! `Authorization` header parsing and JWT verification (HS256).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fluxo::fuzzing::jwt_bearer(data));

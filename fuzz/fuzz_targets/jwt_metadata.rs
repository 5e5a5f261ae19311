//! Envoy's request metadata as the route role reads it for JWT users: any bytes are read without a panic
//! within the decoder's bounds, and every claim a path reaches (the user claim, a teams claim, nested)
//! reads as a value or as strings, or is refused.
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchyard::identity::metadata::{read, Jwt, MAX_LIST_ITEMS};

const PATHS: &[&str] = &["sub", "groups", "realm_access.roles", "a.b.c", "", ".", "https://x/roles"];

fuzz_target!(|data: &[u8]| {
    let Ok(Jwt::Verified(claims)) = read(data) else { return };
    for path in PATHS {
        if let Ok(Some(claim)) = claims.get(path) {
            if let Ok(list) = claim.strings() {
                assert!(list.len() <= MAX_LIST_ITEMS, "{} strings", list.len());
            }
        }
    }
});

//! The config parser on any bytes (every environment variable set): a config or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchyard::config::Config;
use switchyard_fuzz::AllSet;

fuzz_target!(|data: &[u8]| {
    if let Ok(cfg) = Config::parse(data, &AllSet) {
        let _ = cfg.key_index("sk-fuzz-key");
        for name in cfg.models.keys() {
            let _ = cfg.models.get(name).map(|m| m.max_price());
        }
    }
});

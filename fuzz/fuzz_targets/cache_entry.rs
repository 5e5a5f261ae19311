//! What the response cache reads back: any bytes as a stored answer (the process tier's or the fleet
//! tier's, which may be corrupt) render in every client format and mode or are refused, never a panic;
//! a fleet entry is checked against its key and times.
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchyard::api::openai::Operation;
use switchyard::cache::{fleet, render};
use switchyard::providers::mock::Clock;
use switchyard_fuzz::control;

fuzz_target!(|data: &[u8]| {
    let ([how], payload) = control::<1>(data);
    let op = [Operation::ChatCompletions, Operation::Messages, Operation::Responses][usize::from(how & 3) % 3];
    let clock = Clock { unix_secs: 1_700_000_000, seq: 1 };
    if let Some(answer) = render(payload, op, how & 4 != 0, how & 8 != 0, "m", clock, b"{\"model\":\"m\",\"input\":\"hi\"}") {
        assert!(!answer.body.is_empty());
    }
    let _ = fleet::decode_entry(payload.to_vec(), &[7; 32], 1_700_000_000_000_000_000);
});

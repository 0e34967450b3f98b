//! Any bytes as a lead body: parsing must never panic, and what it accepts
//! must fingerprint and render its personal-data mask without panicking.
#![no_main]

use leadbridge::lead::{Lead, Redactor, fingerprint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((lead, document)) = Lead::parse_json(data) {
        let _ = fingerprint(&document);
        let redactor = Redactor::for_lead(&lead);
        let _ = redactor.redact(&String::from_utf8_lossy(data));
    }
});

//! Any bytes as a lead, through the shipped mapping and fitted to the
//! columns (with and without metadata): rendering never fails or panics,
//! and what is sent is a JSON object whose single-line text holds no
//! control character.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use leadbridge::ids::LeadId;
use leadbridge::lead::{Lead, OrgName};
use leadbridge::mapping::{Mapping, RenderContext};
use libfuzzer_sys::fuzz_target;

fn mapping() -> &'static Mapping {
    static M: OnceLock<Mapping> = OnceLock::new();
    M.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../mappings/contoso.yaml");
        Mapping::load(Path::new(path)).expect("the shipped mapping loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok((lead, _)) = Lead::parse_json(data) else {
        return;
    };
    let org = OrgName::parse("contoso").expect("a valid name");
    let record = mapping().render(&RenderContext {
        lead: &lead,
        lead_id: LeadId::generate(),
        org: &org,
        received_at: time::OffsetDateTime::UNIX_EPOCH,
    });
    let mut body = record.body.clone();
    let _ = mapping().fit(&mut body, None);
    for (column, value) in &body {
        if let Some(s) = value.as_str()
            && column != "description"
        {
            assert!(
                !s.chars().any(char::is_control),
                "{column} still has a control character"
            );
        }
    }
    let _ = serde_json::to_vec(&body).expect("serialisable");
});

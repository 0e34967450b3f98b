use std::path::Path;

use serde_json::json;
use time::macros::datetime;

use super::*;
use crate::lead::SAMPLE_LEAD_2020;
use uuid::Uuid;

fn mapping(yaml: &str) -> Mapping {
    Mapping::from_yaml(Path::new("test.yaml"), yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn issues(yaml: &str) -> Vec<MappingIssue> {
    match Mapping::from_yaml(Path::new("test.yaml"), yaml) {
        Err(MappingError::Invalid { issues, .. }) => issues,
        other => panic!("expected validation issues, got {other:?}"),
    }
}

/// Renders `lead`, given an empty `UserDetails` when it has none (the
/// tests name only the fields they are about).
fn render_value(m: &Mapping, mut lead: serde_json::Value) -> Map<String, Value> {
    if let Some(obj) = lead.as_object_mut() {
        obj.entry("UserDetails").or_insert_with(|| json!({}));
    }
    let lead = Lead::parse(&lead).unwrap();
    let org = OrgName::parse("contoso").unwrap();
    m.render(&RenderContext {
        lead: &lead,
        lead_id: LeadId::from(Uuid::nil()),
        org: &org,
        received_at: datetime!(2026-11-22 10:00 UTC),
    })
    .body
}

fn render_sample(m: &Mapping) -> Map<String, Value> {
    render_value(m, serde_json::from_str(SAMPLE_LEAD_2020).unwrap())
}

#[test]
fn source_paths_bare_and_explicit() {
    let m = mapping(
        "fields:\n  firstname: UserDetails.FirstName\n  emailaddress1: {from: userdetails.email}\n",
    );
    assert_eq!(
        Value::Object(render_sample(&m)),
        json!({"firstname": "Some", "emailaddress1": "someone@contoso.com"})
    );
    assert_eq!(m.entity_set(), "leads");
}

#[test]
fn missing_values_are_omitted_unless_defaulted() {
    let m = mapping(
        "fields:\n  jobtitle: UserDetails.Title\n  lastname: {from: UserDetails.LastName, default: '(unknown)'}\n",
    );
    assert_eq!(
        Value::Object(render_value(
            &m,
            json!({"UserDetails": {"LastName": " "}, "OfferTitle": "x"})
        )),
        json!({"lastname": "(unknown)"})
    );
}

#[test]
fn templates_mix_fields_and_text() {
    let m = mapping(
        "fields:\n  subject: {template: '{OfferTitle} ({UserDetails.Company}) {{{$action}}}'}\n  description: {template: 'Note: {Nope}'}\n  new_x: {template: '{Nope}'}\n",
    );
    let body = render_sample(&m);
    assert_eq!(body["subject"], "Test Microsoft (Contoso) {INS}");
    assert_eq!(body["description"], "Note: ");
    assert!(
        !body.contains_key("new_x"),
        "a template of only empty fields is absent"
    );
}

#[test]
fn constants_of_every_scalar_type() {
    let m = mapping(
        "fields:\n  new_channel: {value: Marketplace}\n  new_score: {value: 5}\n  new_ratio: {value: 0.5}\n  donotemail: {value: false}\n  new_cleared: {value: null}\n",
    );
    assert_eq!(
        Value::Object(render_sample(&m)),
        json!({"new_channel": "Marketplace", "new_score": 5, "new_ratio": 0.5, "donotemail": false, "new_cleared": null})
    );
}

#[test]
fn value_maps_with_default_for_unmatched_and_empty() {
    let m = mapping(
        "fields:\n  leadsourcecode:\n    from: $source\n    map: {AzureMarketplace: 8, SPZA: 8}\n    default: 10\n",
    );
    assert_eq!(render_sample(&m)["leadsourcecode"], 8);
    let b = render_value(&m, json!({"LeadSource": "azuremarketplace-INS|p.o"}));
    assert_eq!(b["leadsourcecode"], 8, "map keys match ignoring case");
    let b = render_value(&m, json!({"LeadSource": "TestDrive"}));
    assert_eq!(b["leadsourcecode"], 10, "unmatched falls back to default");
    let b = render_value(&m, json!({"OfferTitle": "x"}));
    assert_eq!(b["leadsourcecode"], 10, "missing falls back to default");

    let no_default =
        mapping("fields:\n  leadsourcecode: {from: $source, map: {AzureMarketplace: 8}}\n");
    assert!(
        !render_value(&no_default, json!({"LeadSource": "TestDrive"}))
            .contains_key("leadsourcecode")
    );
}

#[test]
fn transforms_apply_in_order() {
    let m = mapping(concat!(
        "fields:\n",
        "  a: {from: OfferTitle, transform: [trim, upper]}\n",
        "  b: {from: OfferTitle, transform: lower}\n",
        "  c: {from: OfferTitle, transform: [{truncate: 4}]}\n",
        "  d: {from: OfferTitle, transform: [{truncate: {max: 8, ellipsis: true}}]}\n",
        "  e: {from: OfferTitle, transform: [{truncate: {max: 50, ellipsis: true}}]}\n",
        "  f: {template: '  {OfferTitle}  ', transform: [trim, {truncate: 3}, lower]}\n",
    ));
    let b = render_sample(&m);
    assert_eq!(b["a"], "TEST MICROSOFT");
    assert_eq!(b["b"], "test microsoft");
    assert_eq!(b["c"], "Test");
    assert_eq!(b["d"], "Test Mi…");
    assert_eq!(b["d"].as_str().unwrap().chars().count(), 8);
    assert_eq!(b["e"], "Test Microsoft", "short values are left alone");
    assert_eq!(b["f"], "tes");
}

#[test]
fn truncate_counts_as_dataverse_does_utf16_units_not_bytes_or_characters() {
    let m = mapping("fields:\n  a: {from: OfferTitle, transform: {truncate: 3}}\n");
    assert_eq!(render_value(&m, json!({"OfferTitle": "Ωμέγα"}))["a"], "Ωμέ");
    // Each emoji is two units: three units hold one, never half of the next.
    assert_eq!(render_value(&m, json!({"OfferTitle": "😀😀😀"}))["a"], "😀");
}

#[test]
fn lookups_render_odata_bind() {
    let m = mapping(concat!(
        "fields:\n",
        "  ownerid@odata.bind: {bind: {entity_set: teams, id: 7a2b5c1e-0000-4000-8000-000000000001}}\n",
        "  parentaccountid@odata.bind: {bind: {entity_set: accounts, id: \"accountnumber='A-1'\"}}\n",
    ));
    let b = render_sample(&m);
    assert_eq!(
        b["ownerid@odata.bind"],
        "/teams(7a2b5c1e-0000-4000-8000-000000000001)"
    );
    assert_eq!(
        b["parentaccountid@odata.bind"],
        "/accounts(accountnumber='A-1')"
    );
}

#[test]
fn derived_values() {
    let m = mapping(concat!(
        "fields:\n",
        "  s: $source\n  a: $action\n  o: $offer\n  t: $is_test\n  i: $lead_id\n  g: $org\n  r: $received_at\n",
    ));
    let b = render_value(
        &m,
        json!({"LeadSource": "AzureMarketplace-PLT|contoso.crm", "Description": "MSFT_TEST_1"}),
    );
    assert_eq!(
        Value::Object(b),
        json!({
            "s": "AzureMarketplace", "a": "PLT", "o": "contoso.crm", "t": "true",
            "i": "00000000-0000-0000-0000-000000000000", "g": "contoso",
            "r": "2026-11-22T10:00:00Z"
        })
    );
    let b = render_sample(&m);
    assert_eq!(b["a"], "INS", "ActionCode wins over the LeadSource action");
    assert_eq!(b["t"], "false");
}

#[test]
fn other_entity_sets_and_the_primary_key() {
    let m = mapping(
        "entity_set: contacts\nprimary_key: contactid\nfields:\n  lastname: UserDetails.LastName\n",
    );
    assert_eq!(m.entity_set(), "contacts");
    let lead = Lead::parse(&json!({"UserDetails": {"LastName": "One"}})).unwrap();
    let org = OrgName::parse("contoso").unwrap();
    let id = Uuid::from_u128(7);
    let rec = m
        .render(&RenderContext {
            lead: &lead,
            lead_id: LeadId::from(id),
            org: &org,
            received_at: datetime!(2026-11-22 10:00 UTC),
        })
        .with_primary_key(RecordId::from(id));
    assert_eq!(
        Value::Object(rec.body),
        json!({"lastname": "One", "contactid": id.to_string()})
    );
}

#[test]
fn the_shipped_contoso_mapping_is_valid_and_reproduces_the_seed_flow() {
    let m = Mapping::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/mappings/contoso.yaml"
    )))
    .unwrap_or_else(|e| panic!("{e}"));
    let b = render_sample(&m);
    for (k, v) in [
        ("firstname", "Some"),
        ("lastname", "One"),
        ("emailaddress1", "someone@contoso.com"),
        ("telephone1", "16175555555"),
        ("address1_country", "USA"),
        ("companyname", "Contoso"),
        ("jobtitle", "Esquire"),
        ("subject", "Test Microsoft"),
        ("description", "Test run through Power Automate"),
    ] {
        assert_eq!(b[k], v, "{k}");
    }
}

fn assert_issue(yaml: &str, key: &str, reason_part: &str) {
    let all = issues(yaml);
    assert!(
        all.iter()
            .any(|i| i.key == key && i.reason.contains(reason_part)),
        "expected an issue at {key} containing {reason_part:?}, got {all:#?}"
    );
}

#[test]
fn every_kind_of_file_error_is_reported_with_its_key() {
    assert_issue("- a\n", "(top)", "expected a mapping");
    assert_issue(
        "fields: {a: OfferTitle}\ncolour: red\n",
        "colour",
        "unknown key",
    );
    assert_issue(
        "entity_set: Leads!\nfields: {a: OfferTitle}\n",
        "entity_set",
        "logical name",
    );
    assert_issue(
        "entity_set: contacts\nfields: {a: OfferTitle}\n",
        "primary_key",
        "required",
    );
    assert_issue("entity_set: leads\n", "fields", "missing");
    assert_issue("fields: {}\n", "fields", "empty");
    assert_issue("fields: [a]\n", "fields", "expected a mapping");
    assert_issue(
        "fields: {leadid: OfferTitle}\n",
        "fields.leadid",
        "primary key",
    );
    assert_issue(
        "fields: {First Name: OfferTitle}\n",
        "fields.First Name",
        "not a Dataverse column",
    );
    assert_issue(
        "fields: {a: 'User Details'}\n",
        "fields.a",
        "invalid source path",
    );
    assert_issue("fields: {a: $nope}\n", "fields.a", "unknown derived value");
    assert_issue(
        "fields: {a: 5}\n",
        "fields.a",
        "expected a source path or a mapping",
    );
    assert_issue("fields: {a: {}}\n", "fields.a", "exactly one source");
    assert_issue(
        "fields: {a: {from: OfferTitle, value: x}}\n",
        "fields.a",
        "several sources",
    );
    assert_issue(
        "fields: {a: {from: OfferTitle, colour: red}}\n",
        "fields.a.colour",
        "unknown key",
    );
    assert_issue(
        "fields: {a: {from: [x]}}\n",
        "fields.a.from",
        "expected a source path",
    );
    assert_issue(
        "fields: {a: {template: '{OfferTitle'}}\n",
        "fields.a.template",
        "unclosed",
    );
    assert_issue(
        "fields: {a: {template: 'x}'}}\n",
        "fields.a.template",
        "unmatched",
    );
    assert_issue(
        "fields: {a: {template: 'plain'}}\n",
        "fields.a.template",
        "no {field}",
    );
    assert_issue(
        "fields: {a: {template: '{bad path}'}}\n",
        "fields.a.template",
        "invalid source path",
    );
    assert_issue(
        "fields: {a: {value: [1]}}\n",
        "fields.a.value",
        "expected a string, number",
    );
    assert_issue(
        "fields: {a: {from: OfferTitle, transform: [shout]}}\n",
        "fields.a.transform[0]",
        "unknown transform",
    );
    assert_issue(
        "fields: {a: {from: OfferTitle, transform: [truncate]}}\n",
        "fields.a.transform[0]",
        "needs a length",
    );
    assert_issue(
        "fields: {a: {from: OfferTitle, transform: [{truncate: 0}]}}\n",
        "fields.a.transform[0]",
        "at least 1",
    );
    assert_issue(
        "fields: {a: {from: OfferTitle, transform: [{truncate: {max: 3, dots: true}}]}}\n",
        "fields.a.transform[0]",
        "unknown option",
    );
    assert_issue(
        "fields: {a: {from: OfferTitle, transform: [{truncate: {max: 3, ellipsis: yes please}}]}}\n",
        "fields.a.transform[0]",
        "true or false",
    );
    assert_issue(
        "fields: {a: {from: OfferTitle, map: [x]}}\n",
        "fields.a.map",
        "expected a mapping",
    );
    assert_issue(
        "fields: {a: {from: OfferTitle, map: {}}}\n",
        "fields.a.map",
        "empty",
    );
    assert_issue(
        "fields: {a: {from: OfferTitle, map: {x: [1]}}}\n",
        "fields.a.map.x",
        "expected a string",
    );
    assert_issue(
        "fields: {a: {from: OfferTitle, default: {x: 1}}}\n",
        "fields.a.default",
        "expected a string",
    );
    assert_issue(
        "fields: {ownerid: {bind: {entity_set: teams, id: 7a2b5c1e-0000-4000-8000-000000000001}}}\n",
        "fields.ownerid.bind",
        "@odata.bind",
    );
    assert_issue(
        "fields: {ownerid@odata.bind: {bind: teams}}\n",
        "fields.ownerid@odata.bind.bind",
        "expected `{entity_set",
    );
    assert_issue(
        "fields: {ownerid@odata.bind: {bind: {id: 7a2b5c1e-0000-4000-8000-000000000001}}}\n",
        "fields.ownerid@odata.bind.bind",
        "missing entity_set",
    );
    assert_issue(
        "fields: {ownerid@odata.bind: {bind: {entity_set: teams}}}\n",
        "fields.ownerid@odata.bind.bind.id",
        "missing",
    );
    assert_issue(
        "fields: {ownerid@odata.bind: {bind: {entity_set: teams, id: '/teams(x)'}}}\n",
        "fields.ownerid@odata.bind.bind.id",
        "record id",
    );
    assert_issue(
        "fields: {ownerid@odata.bind: {bind: {entity_set: teams, id: x, colour: red}}}\n",
        "fields.ownerid@odata.bind.bind.colour",
        "unknown key",
    );
}

#[test]
fn all_problems_of_a_file_are_reported_at_once() {
    let all = issues("colour: red\nfields:\n  a: $nope\n  b: {value: [1]}\n  c: OfferTitle\n");
    assert_eq!(all.len(), 3, "{all:#?}");
    let err = Mapping::from_yaml(Path::new("m/x.yaml"), "fields: {a: $nope}\n").unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("m/x.yaml: fields.a: unknown derived value"),
        "{text}"
    );
}

#[test]
fn yaml_syntax_and_io_errors_name_the_file() {
    let err = Mapping::from_yaml(Path::new("bad.yaml"), "fields: {a: [}\n").unwrap_err();
    assert!(matches!(err, MappingError::Syntax { .. }));
    assert!(
        err.to_string().starts_with("bad.yaml: not valid YAML"),
        "{err}"
    );
    let err = Mapping::load(Path::new("/nonexistent/x.yaml")).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/x.yaml: cannot read"),
        "{err}"
    );
}

#[test]
fn a_lookup_takes_only_a_bind_never_a_value_from_the_lead() {
    for field in [
        "ownerid@odata.bind: UserDetails.Email",
        "ownerid@odata.bind: {template: \"/teams({Description})\"}",
        "ownerid@odata.bind: {value: \"/teams(7a2b5c1e-0000-4000-8000-000000000001)\"}",
    ] {
        let found = issues(&format!("fields:\n  {field}\n"));
        assert!(
            found
                .iter()
                .any(|i| i.key == "fields.ownerid@odata.bind"
                    && i.reason.contains("takes only `bind:")),
            "{field}: {found:#?}"
        );
    }
}

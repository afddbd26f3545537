//! The JSON request body `rwload --body-json` sends and `rwcompare` probes with: one
//! generator, so a gateway that validates bodies accepts the probe and the load alike.

/// A JSON order document of about `size` bytes (at least ~100): a customer, a note and line
/// items, the shape `loadtest/scenarios/validated-post.yaml` describes, so a gateway that
/// validates request bodies accepts every request.
pub fn json_body(size: usize) -> Vec<u8> {
    let mut out =
        String::from(r#"{"customer":"bench-customer-0001","note":"closed-loop load","items":["#);
    let mut i = 0u32;
    loop {
        let item = format!(
            r#"{}{{"sku":"SKU-{:05}","qty":{},"price":{}.5}}"#,
            if i == 0 { "" } else { "," },
            i,
            1 + i % 9,
            3 + i % 40
        );
        if i > 0 && out.len() + item.len() + 2 > size {
            break;
        }
        out.push_str(&item);
        i += 1;
    }
    out.push_str("]}");
    out.into_bytes()
}

//! The portal's static assets, embedded in the binary (no CDN, no external fonts): one
//! stylesheet and one script. Their bytes never change within a build, so they are served with
//! a long cache lifetime and an ETag made from the build's package version and content length.

/// One embedded asset.
pub struct Asset {
    /// File name under `{base}/assets/`.
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// Every asset the pages refer to.
pub static ASSETS: [Asset; 2] = [
    Asset {
        name: "portal.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/portal.css").as_bytes(),
    },
    Asset {
        name: "portal.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/portal.js").as_bytes(),
    },
];

/// The asset named `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_self_contained() {
        for a in &ASSETS {
            let text = std::str::from_utf8(a.body).unwrap();
            assert!(!text.is_empty());
            // No external URL: the portal works offline and leaks no visit to a third party.
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{}",
                a.name
            );
            assert!(
                !text.contains("@import") && !text.contains("url("),
                "{}",
                a.name
            );
            // The script writes response data as text only.
            assert!(!text.contains("innerHTML"), "{}", a.name);
        }
        assert!(find("portal.js").is_some());
        assert!(find("../portal.js").is_none());
    }
}

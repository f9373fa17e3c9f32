//! Device class of a visitor (desktop, mobile, tablet) from its `User-Agent` and the
//! `Sec-CH-UA-Mobile` client hint.
//!
//! Offers are routed by device, so this runs on every click: a handful of substring searches
//! (`memchr::memmem`, finders built once), no regular expressions, no parsing of versions.
//!
//! Rules, in order:
//! 1. `iPad`, `Tablet`, `Kindle`, `Silk`, or `Android` without `Mobile` in the user agent: tablet.
//! 2. `Mobi`, `iPhone`, `iPod`, `Windows Phone`, `Opera Mini`: mobile.
//! 3. `Sec-CH-UA-Mobile: ?1`: mobile (`?0` does not turn a tablet user agent into a desktop).
//! 4. Everything else, a missing user agent included: desktop.
//!
//! What cannot be told: iPadOS Safari (13 and later) sends a Mac desktop user agent by default and no
//! client hints, so those iPads count as desktop; Android tablets in "desktop site" mode send a Linux
//! desktop user agent; Chrome sends `Sec-CH-UA-Mobile: ?0` on Android tablets. Telling these apart
//! needs JavaScript (touch points, screen size), which a redirect does not run.
//!
//! Invariants: no allocation, no lock, no syscall per call (the finders are built on first use;
//! after that reaching them is one atomic load).

use std::sync::LazyLock;

use memchr::memmem::Finder;

/// What kind of device a visitor uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceClass {
    Desktop,
    Mobile,
    Tablet,
}

impl DeviceClass {
    /// Every class, in index order.
    pub const ALL: [DeviceClass; 3] = [DeviceClass::Desktop, DeviceClass::Mobile, DeviceClass::Tablet];

    /// The lower-case name used in rules and reports: `desktop`, `mobile`, `tablet`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Desktop => "desktop",
            DeviceClass::Mobile => "mobile",
            DeviceClass::Tablet => "tablet",
        }
    }

    /// The class named by [`DeviceClass::as_str`], exactly (lower case).
    pub fn parse(s: &str) -> Option<DeviceClass> {
        DeviceClass::ALL.into_iter().find(|class| class.as_str() == s)
    }

    /// This class's position in [`DeviceClass::ALL`], for dense per-class arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The device class of a visitor, from its `User-Agent` and `Sec-CH-UA-Mobile` header values.
pub fn device_class(user_agent: Option<&[u8]>, ch_ua_mobile: Option<&[u8]>) -> DeviceClass {
    let finders = &*FINDERS;
    if let Some(ua) = user_agent {
        let found = |finders: &[Finder<'static>]| finders.iter().any(|f| f.find(ua).is_some());
        if found(&finders.tablet) {
            return DeviceClass::Tablet;
        }
        let android = finders.android.find(ua).is_some();
        let mobile_token = finders.mobile.find(ua).is_some();
        if android && !mobile_token {
            return DeviceClass::Tablet;
        }
        if finders.mobi.find(ua).is_some() || found(&finders.phone) {
            return DeviceClass::Mobile;
        }
    }
    if ch_ua_mobile.is_some_and(|hint| hint.trim_ascii() == b"?1") {
        return DeviceClass::Mobile;
    }
    DeviceClass::Desktop
}

/// The substring searchers, built once: a `Finder` keeps its precomputed search state.
struct Finders {
    /// Tokens that alone mean a tablet.
    tablet: Vec<Finder<'static>>,
    /// `Android`: a tablet unless `Mobile` is there too.
    android: Finder<'static>,
    /// `Mobile`: tells an Android phone from an Android tablet.
    mobile: Finder<'static>,
    /// `Mobi`: Mozilla's advice for "a mobile device" (covers `Mobile`).
    mobi: Finder<'static>,
    /// Phone tokens without `Mobi` in some agents.
    phone: Vec<Finder<'static>>,
}

static FINDERS: LazyLock<Finders> = LazyLock::new(|| Finders {
    tablet: ["iPad", "Tablet", "Kindle", "Silk"].into_iter().map(Finder::new).collect(),
    android: Finder::new("Android"),
    mobile: Finder::new("Mobile"),
    mobi: Finder::new("Mobi"),
    phone: ["iPhone", "iPod", "Windows Phone", "Opera Mini"].into_iter().map(Finder::new).collect(),
});

#[cfg(test)]
mod tests {
    use super::*;

    fn ua(s: &str) -> DeviceClass {
        device_class(Some(s.as_bytes()), None)
    }

    #[test]
    fn names_round_trip() {
        for (i, class) in DeviceClass::ALL.into_iter().enumerate() {
            assert_eq!(class.index(), i);
            assert_eq!(DeviceClass::parse(class.as_str()), Some(class));
        }
        assert_eq!(DeviceClass::parse("Mobile"), None);
        assert_eq!(DeviceClass::parse("phone"), None);
    }

    #[test]
    fn real_user_agents() {
        let cases = [
            // Phones.
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                DeviceClass::Mobile,
            ),
            (
                "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
                DeviceClass::Mobile,
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
                DeviceClass::Mobile,
            ),
            ("Mozilla/5.0 (Android 14; Mobile; rv:127.0) Gecko/127.0 Firefox/127.0", DeviceClass::Mobile),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/470.0.0.39.109;FBBV/612345678;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;FBSV/17.5;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]",
                DeviceClass::Mobile,
            ),
            (
                "Mozilla/5.0 (iPod touch; CPU iPhone OS 12_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1.2 Safari/604.1",
                DeviceClass::Mobile,
            ),
            (
                "Mozilla/5.0 (compatible; MSIE 10.0; Windows Phone 8.0; Trident/6.0; IEMobile/10.0; ARM; Touch; NOKIA; Lumia 920)",
                DeviceClass::Mobile,
            ),
            (
                "Opera/9.80 (J2ME/MIDP; Opera Mini/9.80 (S60; SymbOS; Opera Mobi/23.348; U; en) Presto/2.5.25 Version/10.54",
                DeviceClass::Mobile,
            ),
            // Tablets.
            (
                "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
                DeviceClass::Tablet,
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 12_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1 Mobile/15E148 Safari/604.1",
                DeviceClass::Tablet,
            ),
            (
                "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/126.4.1 like Chrome/126.0.6478.186 Safari/537.36",
                DeviceClass::Tablet,
            ),
            (
                "Mozilla/5.0 (Linux; U; en-us; KFAPWI Build/JDQ39) AppleWebKit/535.19 (KHTML, like Gecko) Silk/3.13 Safari/535.19 Silk-Accelerated=true",
                DeviceClass::Tablet,
            ),
            ("Mozilla/5.0 (Android 14; Tablet; rv:127.0) Gecko/127.0 Firefox/127.0", DeviceClass::Tablet),
            // Desktops.
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
                DeviceClass::Desktop,
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
                DeviceClass::Desktop,
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
                DeviceClass::Desktop,
            ),
            ("Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0", DeviceClass::Desktop),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
                DeviceClass::Desktop,
            ),
            ("", DeviceClass::Desktop),
        ];
        for (agent, want) in cases {
            assert_eq!(ua(agent), want, "{agent}");
        }
    }

    #[test]
    fn client_hint() {
        let desktop = b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
        // Chrome on Android with a reduced UA still sends the hint.
        let tablet =
            b"Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
        let phone = b"Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36";
        assert_eq!(device_class(Some(desktop), Some(b"?1")), DeviceClass::Mobile);
        assert_eq!(device_class(Some(desktop), Some(b" ?1 ")), DeviceClass::Mobile);
        assert_eq!(device_class(Some(desktop), Some(b"?0")), DeviceClass::Desktop);
        assert_eq!(device_class(Some(tablet), Some(b"?0")), DeviceClass::Tablet);
        assert_eq!(device_class(Some(phone), Some(b"?0")), DeviceClass::Mobile);
        assert_eq!(device_class(None, Some(b"?1")), DeviceClass::Mobile);
        assert_eq!(device_class(None, Some(b"1")), DeviceClass::Desktop);
        assert_eq!(device_class(None, None), DeviceClass::Desktop);
    }
}

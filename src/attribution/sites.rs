//! Allocation sites and their growth across successive profiles of one process.
//!
//! **Which frame is the site.** V8 records the functions on the stack when it samples an
//! allocation, not the statement, and names each by where it is defined. The leaf is often a
//! builtin (`set` of a Map, with no URL) or Node.js internals (`node:events` adding a listener),
//! which say nothing about the app's bug. So a site is the innermost frame of the app's own code
//! (a URL that is neither empty nor `node:`), with a short stack of up to [`STACK`] such frames
//! (the site first) to tell its callers apart. Allocations with no such frame on their stack
//! belong to their innermost frame that has a URL, or to their leaf. A function that V8 inlined
//! into its caller allocates under the caller's name: the stack holds physical frames only.
//!
//! **What grows.** A sampling profile holds only the sampled objects still alive, allocated since
//! sampling started, so short-lived garbage mostly vanishes at the next young collection;
//! garbage promoted to the old space stays until a full GC, and a bounded structure being filled
//! (a ring, an LRU) grows until it is full. A site grows when, over at least [`GrowthRule::min_profiles`]
//! profiles: more than two thirds of the steps between successive profiles rise; its live bytes
//! rose by at least [`GrowthRule::min_samples`] sampling intervals in all (the weight of that many
//! samples, so one or two samples coming and going are not growth) and by at least one interval
//! over the newer half (a structure that filled up and stopped is not); and its Theil–Sen slope is
//! at least [`GrowthRule::min_rate`].

use std::collections::HashMap;

use super::profile::{Frame, Profile};

/// User frames kept per site's stack (the site first).
pub const STACK: usize = 5;

/// Sites tracked per process; the smallest are forgotten first.
pub const MAX_SITES: usize = 2000;

/// Profiles kept per process; the oldest are forgotten first.
pub const MAX_PROFILES: usize = 120;

/// One allocation site in one profile.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Site {
    /// The site's frame: the innermost frame of the app's code.
    pub frame: Frame,
    /// Up to [`STACK`] frames of the app's code, the site first, then its callers (the stack that
    /// allocated the most live bytes at this site).
    pub stack: Vec<Frame>,
    pub live_bytes: u64,
    pub live_objects: f64,
}

/// Aggregates a profile by site, largest first.
pub fn sites(profile: &Profile) -> Vec<Site> {
    // Per node: the index of its site's frame and its stack, computed from its parent's.
    struct At {
        site: Option<usize>,
        stack: Vec<usize>,
        fallback: usize,
    }
    let mut at: Vec<At> = Vec::with_capacity(profile.nodes.len());
    let mut by_site: HashMap<usize, (Site, HashMap<Vec<usize>, u64>)> = HashMap::new();
    for (i, node) in profile.nodes.iter().enumerate() {
        let frame = &profile.frames[node.frame];
        let parent = node.parent.map(|p| &at[p]);
        let mut here = match parent {
            Some(p) => At { site: p.site, stack: p.stack.clone(), fallback: p.fallback },
            None => At { site: None, stack: Vec::new(), fallback: node.frame },
        };
        if frame.is_user() {
            here.site = Some(node.frame);
            here.stack.insert(0, node.frame);
            here.stack.truncate(STACK);
        } else if !frame.url.is_empty() || parent.is_none() {
            here.fallback = node.frame;
        }
        debug_assert_eq!(at.len(), i);
        if node.self_bytes > 0 || node.self_objects > 0.0 {
            let site = here.site.unwrap_or(here.fallback);
            let stack = if here.site.is_some() { here.stack.clone() } else { vec![site] };
            let entry = by_site.entry(site).or_insert_with(|| {
                let f = profile.frames[site].clone();
                (Site { frame: f, stack: Vec::new(), live_bytes: 0, live_objects: 0.0 }, HashMap::new())
            });
            entry.0.live_bytes += node.self_bytes;
            entry.0.live_objects += node.self_objects;
            *entry.1.entry(stack).or_default() += node.self_bytes;
        }
        at.push(here);
    }
    let mut out: Vec<Site> = by_site
        .into_values()
        .map(|(mut s, stacks)| {
            let top = stacks.into_iter().max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0))).map(|(k, _)| k);
            s.stack = top.unwrap_or_default().into_iter().map(|f| profile.frames[f].clone()).collect();
            s
        })
        .collect();
    out.sort_by(|a, b| b.live_bytes.cmp(&a.live_bytes).then_with(|| a.frame.cmp(&b.frame)));
    out
}

/// When a site counts as growing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrowthRule {
    pub min_profiles: usize,
    /// Bytes per second.
    pub min_rate: f64,
    /// Rise in all, in sampling intervals.
    pub min_samples: f64,
}

impl Default for GrowthRule {
    fn default() -> Self {
        // Half the heap verdict's minimum rate (64 KiB/min): a leak may spread over a few sites.
        // Eight samples' weight: four let a Node.js internal site of a healthy app under heavy
        // load (timers) pass in a 16-second run.
        GrowthRule { min_profiles: 3, min_rate: 32.0 * 1024.0 / 60.0, min_samples: 8.0 }
    }
}

/// A site whose live bytes grow.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Growth {
    pub function: String,
    pub url: String,
    pub line: u32,
    pub column: u32,
    /// `file:line` of the function's definition.
    pub location: String,
    /// Whether the site is in the app's code; otherwise no frame of the app's was on the stack
    /// (Node.js internals, or native code with no JavaScript frame).
    pub user: bool,
    pub stack: Vec<String>,
    /// At the newest profile.
    pub live_bytes: u64,
    pub live_objects: f64,
    /// Theil–Sen slope of the live bytes over the profiles.
    pub growth_bytes_per_second: f64,
    /// Profiles this site was judged on.
    pub profiles: usize,
}

struct Series {
    site: Site,
    /// Live bytes per profile, aligned with [`History::times`] (0 where absent).
    bytes: Vec<f64>,
}

/// Successive profiles of one process, by site. Bounded by [`MAX_PROFILES`] and [`MAX_SITES`].
pub struct History {
    interval: u64,
    times: Vec<f64>,
    series: HashMap<Frame, Series>,
}

impl History {
    /// `interval` is the sampling interval in bytes, the weight of one sample.
    pub fn new(interval: u64) -> History {
        History { interval, times: Vec::new(), series: HashMap::new() }
    }

    pub fn profiles(&self) -> usize {
        self.times.len()
    }

    /// Adds the sites of a profile taken `t` seconds after sampling started.
    pub fn add(&mut self, t: f64, sites: &[Site]) {
        if self.times.len() == MAX_PROFILES {
            self.times.remove(0);
            for s in self.series.values_mut() {
                s.bytes.remove(0);
            }
        }
        self.times.push(t);
        let n = self.times.len();
        for s in self.series.values_mut() {
            s.bytes.push(0.0);
        }
        for site in sites {
            let series = self
                .series
                .entry(site.frame.clone())
                .or_insert_with(|| Series { site: site.clone(), bytes: vec![0.0; n] });
            series.site = site.clone();
            *series.bytes.last_mut().expect("one value per profile") = site.live_bytes as f64;
        }
        // Forget sites absent from the whole history, then the smallest past the cap.
        self.series.retain(|_, s| s.bytes.iter().any(|b| *b > 0.0));
        if self.series.len() > MAX_SITES {
            let mut sizes: Vec<(f64, Frame)> =
                self.series.iter().map(|(k, s)| (s.bytes.iter().cloned().fold(0.0, f64::max), k.clone())).collect();
            sizes.sort_by(|a, b| b.0.total_cmp(&a.0));
            for (_, k) in sizes.into_iter().skip(MAX_SITES) {
                self.series.remove(&k);
            }
        }
    }

    /// The growing sites, fastest first.
    pub fn growing(&self, rule: &GrowthRule) -> Vec<Growth> {
        let n = self.times.len();
        if n < rule.min_profiles.max(2) {
            return Vec::new();
        }
        let interval = self.interval as f64;
        let mut out: Vec<Growth> = self
            .series
            .values()
            .filter_map(|s| {
                let b = &s.bytes;
                let rises = b.windows(2).filter(|w| w[1] > w[0]).count();
                if rises * 3 <= (n - 1) * 2 {
                    return None;
                }
                if b[n - 1] - b[0] < rule.min_samples * interval || b[n - 1] - b[(n - 1) / 2] < interval {
                    return None;
                }
                let points: Vec<(f64, f64)> = self.times.iter().cloned().zip(b.iter().cloned()).collect();
                let slope = crate::analysis::theil_sen(&points)?;
                if slope < rule.min_rate {
                    return None;
                }
                let f = &s.site.frame;
                Some(Growth {
                    function: f.function.clone(),
                    url: f.url.clone(),
                    line: f.line,
                    column: f.column,
                    location: f.location(),
                    user: f.is_user(),
                    stack: s.site.stack.iter().map(|f| format!("{} ({})", f.function, f.location())).collect(),
                    live_bytes: s.site.live_bytes,
                    live_objects: s.site.live_objects,
                    growth_bytes_per_second: slope,
                    profiles: n,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            b.growth_bytes_per_second.total_cmp(&a.growth_bytes_per_second).then_with(|| a.location.cmp(&b.location))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::profile::{parse_text, tests::sample_profile, ProfileLimits};
    use super::*;

    fn frame(function: &str, line: u32) -> Frame {
        Frame { function: function.into(), url: "/srv/app.js".into(), line, column: 1 }
    }

    fn site(function: &str, line: u32, bytes: u64) -> Site {
        Site { frame: frame(function, line), stack: vec![frame(function, line)], live_bytes: bytes, live_objects: 0.0 }
    }

    #[test]
    fn builtins_and_internals_count_for_the_innermost_user_frame() {
        let p = parse_text(&sample_profile(1000, 2000, 300), 32768, ProfileLimits::default()).unwrap();
        let s = sites(&p);
        // handler's own 1000 bytes and the Map's 2000 (a builtin called by handler) are handler's.
        assert_eq!(s[0].frame.function, "handler");
        assert_eq!(s[0].live_bytes, 3000);
        assert_eq!(s[0].stack.iter().map(|f| f.function.as_str()).collect::<Vec<_>>(), ["handler"]);
        assert_eq!(s[1].frame.function, "render");
        assert_eq!(s[1].stack.iter().map(|f| f.function.as_str()).collect::<Vec<_>>(), ["render", "handler"]);
        // Bytes under node: frames only stay with their innermost frame that has a URL.
        assert_eq!(s[2].frame.function, "listOnTimeout");
        assert_eq!(s[2].live_bytes, 100);
        assert_eq!(s.iter().map(|s| s.live_bytes).sum::<u64>(), p.total_bytes());
    }

    fn history(series: &[(&str, &[u64])]) -> History {
        let mut h = History::new(1024);
        let n = series[0].1.len();
        for i in 0..n {
            let sites: Vec<Site> = series
                .iter()
                .enumerate()
                .map(|(k, (f, v))| site(f, k as u32 + 1, v[i]))
                .filter(|s| s.live_bytes > 0)
                .collect();
            h.add(i as f64 * 5.0, &sites);
        }
        h
    }

    #[test]
    fn a_steady_rise_grows_and_churn_does_not() {
        let rule = GrowthRule { min_rate: 100.0, ..GrowthRule::default() };
        let h = history(&[
            ("leak", &[0, 10_000, 21_000, 30_000, 41_000, 50_000]),
            // Six samples rising one by one are not yet evidence.
            ("slow", &[0, 1024, 2048, 3072, 4096, 6144]),
            // Garbage promoted and collected at full GCs: a sawtooth.
            ("churn", &[30_000, 60_000, 20_000, 50_000, 25_000, 55_000]),
            // A bounded cache that filled and stopped.
            ("ring", &[10_000, 30_000, 50_000, 51_000, 50_000, 50_500]),
            // One sample appearing is no growth.
            ("once", &[0, 0, 0, 0, 1024, 1024]),
            ("flat", &[8_000, 8_000, 8_000, 8_000, 8_000, 8_000]),
        ]);
        let g = h.growing(&rule);
        assert_eq!(g.iter().map(|g| g.function.as_str()).collect::<Vec<_>>(), ["leak"]);
        assert_eq!(g[0].location, "/srv/app.js:1");
        assert!((g[0].growth_bytes_per_second - 2000.0).abs() < 100.0, "{}", g[0].growth_bytes_per_second);
        assert_eq!(g[0].live_bytes, 50_000);
    }

    #[test]
    fn too_few_profiles_or_too_slow_say_nothing() {
        let rule = GrowthRule { min_rate: 100.0, ..GrowthRule::default() };
        assert!(history(&[("leak", &[0, 100_000])]).growing(&rule).is_empty());
        assert_eq!(history(&[("leak", &[0, 50_000, 100_000])]).growing(&rule).len(), 1);
        let slow = GrowthRule { min_rate: 1e6, ..rule };
        assert!(history(&[("leak", &[0, 50_000, 100_000])]).growing(&slow).is_empty());
    }

    #[test]
    fn history_is_bounded() {
        let mut h = History::new(1);
        for i in 0..(MAX_PROFILES + 10) {
            let sites: Vec<Site> =
                (0..(MAX_SITES as u32 + 50)).map(|k| site("f", k + 1, (i as u64 + 1) * (k as u64 + 1))).collect();
            h.add(i as f64, &sites);
        }
        assert_eq!(h.profiles(), MAX_PROFILES);
        assert_eq!(h.series.len(), MAX_SITES);
        assert!(h.series.values().all(|s| s.bytes.len() == MAX_PROFILES));
        // The largest were kept.
        assert!(h.series.contains_key(&frame("f", MAX_SITES as u32 + 50)));
    }
}

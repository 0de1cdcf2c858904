//! Snapshots written as DHAT and pprof profiles, read back by other means than the writers use
//! (DHAT's JSON as untyped `serde_json` values; pprof's protobuf with messages declared here from
//! `profile.proto`'s field numbers), and tracemalloc's dump and load.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use alloc_core::{DomainAllocator, System};
use alloc_debug::{
    DhatProfile, Frame, Snapshot, SnapshotFileError, Tag, Trace, Traceback, Tracing, with_tag,
};
use serde_json::Value;

fn frame(file: &str, line: u32, function: &str) -> Frame {
    Frame::new(file, line, function)
}

fn tb(frames: &[&Frame]) -> Traceback {
    Traceback::new(frames.iter().map(|&f| f.clone()).collect())
}

fn trace(domain: u32, size: usize, traceback: &Traceback) -> Trace {
    Trace {
        domain,
        size,
        traceback: traceback.clone(),
    }
}

/// Tracebacks sharing frames and prefixes, a tag's frame (no function), one traceback in two
/// domains.
fn sample() -> Snapshot {
    let a = frame("src/a.rs", 10, "app::a");
    let b = frame("src/b.rs", 20, "app::b");
    let main = frame("src/main.rs", 5, "app::main");
    let tag = frame("request-buffers", 1, "");
    let a_main = tb(&[&a, &main]);
    let a_b_main = tb(&[&a, &b, &main]);
    let b_main = tb(&[&b, &main]);
    let tagged = tb(&[&tag]);
    Snapshot::new(
        vec![
            trace(0, 100, &a_main),
            trace(0, 50, &a_main),
            trace(0, 10, &a_main),
            trace(0, 1000, &a_b_main),
            trace(0, 7, &b_main),
            trace(0, 7, &b_main),
            trace(0, 256, &tagged),
            trace(7, 40, &a_main),
            trace(7, 40, &a_main),
        ],
        3,
    )
}

/// A frame as the test expects it in DHAT's frame table.
fn dhat_frame(f: &Frame) -> String {
    if f.function.is_empty() {
        format!("{}:{}", f.filename, f.lineno)
    } else {
        format!("{} ({}:{})", f.function, f.filename, f.lineno)
    }
}

/// Bytes and blocks by frame list (as DHAT strings), summed over domains, from the traces.
fn expected_dhat(s: &Snapshot) -> BTreeMap<Vec<String>, (u64, u64)> {
    let mut m = BTreeMap::new();
    for t in s.traces() {
        let key = t.traceback.frames().iter().map(dhat_frame).collect();
        let e = m.entry(key).or_insert((0, 0));
        e.0 += t.size as u64;
        e.1 += 1;
    }
    m
}

/// The DHAT file of `s`, parsed as untyped JSON.
fn dhat_json(s: &Snapshot) -> Value {
    let mut out = Vec::new();
    s.write_dhat(&mut out).unwrap();
    serde_json::from_slice(&out).unwrap()
}

/// Checks the file against DHAT's format (as `dh_view.html` reads it, with `bklt` and `bkacc`
/// false) and returns its program points as frame strings with their bytes and blocks.
fn dhat_points(json: &Value) -> BTreeMap<Vec<String>, (u64, u64)> {
    let top = json.as_object().unwrap();
    let keys: BTreeSet<&str> = top.keys().map(String::as_str).collect();
    let mandatory = [
        "dhatFileVersion",
        "mode",
        "verb",
        "bklt",
        "bkacc",
        "tu",
        "Mtu",
        "cmd",
        "pid",
        "te",
        "pps",
        "ftbl",
    ];
    assert_eq!(keys, mandatory.into_iter().collect::<BTreeSet<_>>());
    assert_eq!(json["dhatFileVersion"], 2);
    assert_eq!(json["mode"], "heap-snapshot");
    assert_eq!(json["verb"], "Allocated");
    assert_eq!(json["bklt"], false);
    assert_eq!(json["bkacc"], false);
    assert!(json["tu"].is_string() && json["Mtu"].is_string() && json["cmd"].is_string());
    assert_eq!(json["pid"], std::process::id());
    assert!(json["te"].is_u64());

    let ftbl: Vec<&str> = json["ftbl"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(ftbl[0], "[root]");
    assert_eq!(
        ftbl.iter().collect::<BTreeSet<_>>().len(),
        ftbl.len(),
        "frame table entries are distinct"
    );
    let mut points = BTreeMap::new();
    let mut lists = BTreeSet::new();
    for pp in json["pps"].as_array().unwrap() {
        let keys: BTreeSet<&str> = pp.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["tb", "tbk", "fs"].into_iter().collect());
        let fs: Vec<usize> = pp["fs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as usize)
            .collect();
        assert!(!fs.is_empty());
        assert!(fs.iter().all(|&i| i > 0 && i < ftbl.len()), "{fs:?}");
        assert!(lists.insert(fs.clone()), "a repeated location: {fs:?}");
        let frames = fs.iter().map(|&i| ftbl[i].to_string()).collect();
        let counts = (pp["tb"].as_u64().unwrap(), pp["tbk"].as_u64().unwrap());
        assert!(points.insert(frames, counts).is_none());
    }
    points
}

#[test]
fn dhat_holds_each_traceback_with_its_bytes_and_blocks() {
    let s = sample();
    let points = dhat_points(&dhat_json(&s));
    assert_eq!(points, expected_dhat(&s));
    let tb: u64 = points.values().map(|p| p.0).sum();
    let tbk: u64 = points.values().map(|p| p.1).sum();
    assert_eq!(tb, s.total_size() as u64);
    assert_eq!(tbk, s.traces().len() as u64);
    // The one traceback in two domains is one point (DHAT has no domains).
    let a_main = vec![
        "app::a (src/a.rs:10)".to_string(),
        "app::main (src/main.rs:5)".to_string(),
    ];
    assert_eq!(points[&a_main], (240, 5));
    assert_eq!(points[&vec!["request-buffers:1".to_string()]], (256, 1));
}

#[test]
fn dhat_points_are_largest_first() {
    let d = sample().to_dhat();
    let sizes: Vec<u64> = d.program_points.iter().map(|p| p.total_bytes).collect();
    assert_eq!(sizes, [1000, 256, 240, 14]);
}

#[test]
fn dhat_merges_tracebacks_whose_frames_read_the_same() {
    // Two different frames that print alike: the viewer refuses two points with one frame list,
    // so they must become one point.
    let one = frame("b", 2, "a (x:1)");
    let other = frame("x:1) (b", 2, "a");
    assert_ne!(one, other);
    let s = Snapshot::new(
        vec![trace(0, 3, &tb(&[&one])), trace(0, 5, &tb(&[&other]))],
        1,
    );
    let points = dhat_points(&dhat_json(&s));
    assert_eq!(points.len(), 1);
    assert_eq!(points[&vec!["a (x:1) (b:2)".to_string()]], (8, 2));
}

#[test]
fn dhat_of_an_empty_snapshot_has_only_the_root() {
    let json = dhat_json(&Snapshot::new(Vec::new(), 1));
    assert!(dhat_points(&json).is_empty());
    assert_eq!(json["ftbl"], serde_json::json!(["[root]"]));
}

#[test]
fn dhat_of_a_traced_allocator_matches_its_snapshot() {
    let t = Tracing::new(System).with_depth(4);
    let tagged: Vec<_> = with_tag(Tag::new("parser", 3), || {
        (0..3).map(|i| t.malloc(100 + i).unwrap()).collect()
    });
    let stacked: Vec<_> = (0..5).map(|_| t.malloc(64).unwrap()).collect();
    let s = t.take_snapshot();
    assert_eq!(s.traces().len(), 8);
    let points = dhat_points(&dhat_json(&s));
    assert_eq!(points, expected_dhat(&s));
    assert_eq!(points[&vec!["parser:3".to_string()]], (303, 3));
    let tb: u64 = points.values().map(|p| p.0).sum();
    assert_eq!(tb, 303 + 5 * 64);
    for p in tagged.into_iter().chain(stacked) {
        // SAFETY: live blocks of `t`, each freed once.
        unsafe { t.free(p.as_ptr()) };
    }
}

/// A file as Valgrind's DHAT writes it in heap mode (lifetimes and accesses recorded), trimmed.
const VALGRIND_HEAP: &str = r#"{"dhatFileVersion":2
,"mode":"heap","verb":"Allocated"
,"bklt":true,"bkacc":true
,"tu":"instrs","Mtu":"Minstr"
,"tuth":500
,"cmd":"./a.out 1"
,"pid":4242
,"te":350682
,"tg":331312
,"pps":
 [{"tb":16,"tbk":1
  ,"tl":274
  ,"mb":16,"mbk":1
  ,"gb":16,"gbk":1
  ,"eb":0,"ebk":0
  ,"rb":41,"wb":16
  ,"acc":[-4,3,5]
  ,"fs":[1,2]
  }
 ]
,"ftbl":
 ["[root]"
 ,"0x483DD99: malloc (vg_replace_malloc.c:309)"
 ,"0x109159: main (a.c:5)"
 ]
}"#;

#[test]
fn a_dhat_file_of_valgrind_reads_and_writes_back_the_same() {
    let d: DhatProfile = serde_json::from_str(VALGRIND_HEAP).unwrap();
    assert!(d.block_lifetimes && d.block_accesses);
    assert_eq!(
        (d.short_lived_threshold, d.time_global_max),
        (Some(500), Some(331312))
    );
    let p = &d.program_points[0];
    assert_eq!(
        (p.total_lifetimes, p.max_bytes, p.bytes_at_end),
        (Some(274), Some(16), Some(0))
    );
    assert_eq!(p.accesses.as_deref(), Some(&[-4, 3, 5][..]));
    assert_eq!(p.frames, [1, 2]);
    let again: Value = serde_json::to_value(&d).unwrap();
    assert_eq!(again, serde_json::from_str::<Value>(VALGRIND_HEAP).unwrap());
}

/// pprof's messages, declared from `profile.proto`'s field numbers independently of the crate's
/// (only the fields the checks read).
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "3")]
        pub num: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
    }
}

/// The gzipped profile of `s`, gunzipped and decoded.
fn pprof_of(s: &Snapshot) -> (Vec<u8>, proto::Profile) {
    let mut gz = Vec::new();
    s.write_pprof(&mut gz).unwrap();
    assert_eq!(&gz[..2], [0x1f, 0x8b], "gzip's magic number");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .unwrap();
    let p = <proto::Profile as prost::Message>::decode(&raw[..]).unwrap();
    (raw, p)
}

/// A stack: (function, file, line) per frame, the leaf first.
type Stack = Vec<(String, String, i64)>;

/// Checks the profile's tables and returns its samples as (domain, stack) with their four values.
fn pprof_samples(p: &proto::Profile) -> BTreeMap<(i64, Stack), Vec<i64>> {
    let st = &p.string_table;
    assert_eq!(st[0], "");
    let s = |i: i64| -> &str {
        assert!(i >= 0 && (i as usize) < st.len(), "string index {i}");
        &st[i as usize]
    };
    let types: Vec<(&str, &str)> = p
        .sample_type
        .iter()
        .map(|t| (s(t.r#type), s(t.unit)))
        .collect();
    assert_eq!(
        types,
        [
            ("alloc_objects", "count"),
            ("alloc_space", "bytes"),
            ("inuse_objects", "count"),
            ("inuse_space", "bytes")
        ]
    );
    assert_eq!(s(p.default_sample_type), "inuse_space");
    let period = p.period_type.as_ref().unwrap();
    assert_eq!((s(period.r#type), s(period.unit)), ("space", "bytes"));
    assert_eq!(p.period, 1);

    let functions: BTreeMap<u64, &proto::Function> = p.function.iter().map(|f| (f.id, f)).collect();
    assert_eq!(
        functions.len(),
        p.function.len(),
        "function ids are distinct"
    );
    assert!(!functions.contains_key(&0));
    let locations: BTreeMap<u64, &proto::Location> = p.location.iter().map(|l| (l.id, l)).collect();
    assert_eq!(
        locations.len(),
        p.location.len(),
        "location ids are distinct"
    );
    assert!(!locations.contains_key(&0));

    let mut samples = BTreeMap::new();
    for sample in &p.sample {
        assert_eq!(sample.value.len(), 4);
        assert_eq!(
            sample.value[0], sample.value[2],
            "alloc_objects = inuse_objects"
        );
        assert_eq!(
            sample.value[1], sample.value[3],
            "alloc_space = inuse_space"
        );
        assert!(!sample.location_id.is_empty());
        let stack: Stack = sample
            .location_id
            .iter()
            .flat_map(|id| {
                let loc = locations[id];
                assert!(!loc.line.is_empty());
                loc.line.iter().map(|line| {
                    let f = functions[&line.function_id];
                    (s(f.name).to_string(), s(f.filename).to_string(), line.line)
                })
            })
            .collect();
        assert_eq!(sample.label.len(), 1);
        assert_eq!(s(sample.label[0].key), "domain");
        let key = (sample.label[0].num, stack);
        assert!(
            samples.insert(key, sample.value.clone()).is_none(),
            "one sample per stack and domain"
        );
    }
    samples
}

/// Blocks and bytes by domain and stack, from the traces (a frame with no function is named by
/// its file).
fn expected_pprof(s: &Snapshot) -> BTreeMap<(i64, Stack), Vec<i64>> {
    let mut m: BTreeMap<(i64, Stack), Vec<i64>> = BTreeMap::new();
    for t in s.traces() {
        let stack = t
            .traceback
            .frames()
            .iter()
            .map(|f| {
                let name = if f.function.is_empty() {
                    &f.filename
                } else {
                    &f.function
                };
                (
                    name.to_string(),
                    f.filename.to_string(),
                    i64::from(f.lineno),
                )
            })
            .collect();
        let v = m.entry((i64::from(t.domain), stack)).or_insert(vec![0; 4]);
        v[0] += 1;
        v[1] += t.size as i64;
        v[2] += 1;
        v[3] += t.size as i64;
    }
    m
}

#[test]
fn pprof_holds_each_traceback_per_domain_with_go_heap_sample_types() {
    let s = sample();
    let (raw, p) = pprof_of(&s);
    let samples = pprof_samples(&p);
    assert_eq!(samples, expected_pprof(&s));
    let inuse: i64 = samples.values().map(|v| v[3]).sum();
    let objects: i64 = samples.values().map(|v| v[2]).sum();
    assert_eq!(inuse, s.total_size() as i64);
    assert_eq!(objects, s.traces().len() as i64);
    // The traceback in two domains is two samples.
    assert_eq!(
        samples
            .keys()
            .filter(|(_, stack)| stack.len() == 2 && stack[0].0 == "app::a")
            .count(),
        2
    );
    // Each frame is one location, each function one entry, each string once.
    assert_eq!(p.location.len(), 4);
    assert_eq!(p.function.len(), 4);
    let strings: BTreeSet<&String> = p.string_table.iter().collect();
    assert_eq!(strings.len(), p.string_table.len());
    // The crate's own messages read the same bytes back to what it built.
    let ours = <alloc_debug::pprof::Profile as prost::Message>::decode(&raw[..]).unwrap();
    assert_eq!(ours, s.to_pprof());
}

#[test]
fn pprof_of_an_empty_snapshot_has_its_sample_types_and_no_sample() {
    let (_, p) = pprof_of(&Snapshot::new(Vec::new(), 1));
    assert!(pprof_samples(&p).is_empty());
    assert!(p.location.is_empty() && p.function.is_empty());
}

#[test]
fn pprof_of_a_traced_allocator_resolves_every_frame() {
    let t = Tracing::with_domain(System, 5).with_depth(8);
    let blocks: Vec<_> = (0..4).map(|i| t.malloc(32 << i).unwrap()).collect();
    let s = t.take_snapshot();
    let (_, p) = pprof_of(&s);
    let samples = pprof_samples(&p);
    assert_eq!(samples, expected_pprof(&s));
    assert!(samples.keys().all(|(domain, _)| *domain == 5));
    let inuse: i64 = samples.values().map(|v| v[3]).sum();
    assert_eq!(inuse, 32 + 64 + 128 + 256);
    // Where debug information is built, this test's own function is on a stack.
    if s.traces()[0].traceback.site().lineno != 0 {
        assert!(
            samples
                .keys()
                .any(|(_, stack)| stack.iter().any(|(function, file, _)| {
                    file.ends_with("tests/export.rs")
                        && function.contains("pprof_of_a_traced_allocator_resolves_every_frame")
                }))
        );
    }
    for b in blocks {
        // SAFETY: live blocks of `t`, each freed once.
        unsafe { t.free(b.as_ptr()) };
    }
}

#[test]
fn a_dumped_snapshot_loads_back_equal() {
    let s = sample();
    let path = std::env::temp_dir().join(format!("alloc-debug-dump-{}.json", std::process::id()));
    s.dump(&path).unwrap();
    let loaded = Snapshot::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded, s);
    assert_eq!(loaded.traceback_limit(), 3);
    assert_eq!(loaded.traces()[7].domain, 7);
    // What is computed from it is the same too.
    assert_eq!(
        loaded.format_top(alloc_debug::KeyType::Traceback, 10),
        s.format_top(alloc_debug::KeyType::Traceback, 10)
    );
    // Shared frames are written once.
    let mut out = Vec::new();
    s.dump_to(&mut out).unwrap();
    let json: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json["frames"].as_array().unwrap().len(), 4);
    assert_eq!(json["tracebacks"].as_array().unwrap().len(), 4);
}

#[test]
fn a_traced_allocators_snapshot_loads_back_equal() {
    let t = Tracing::new(System).with_depth(6);
    let blocks: Vec<_> = (0..10).map(|i| t.malloc(8 + i).unwrap()).collect();
    t.track(3, 0x1000 as *const u8, 4096).unwrap();
    let s = t.take_snapshot();
    let mut out = Vec::new();
    s.dump_to(&mut out).unwrap();
    let loaded = Snapshot::load_from(&out[..]).unwrap();
    assert_eq!(loaded, s);
    assert_eq!(loaded.traces().len(), 11);
    t.untrack(3, 0x1000 as *const u8).unwrap();
    for b in blocks {
        // SAFETY: live blocks of `t`, each freed once.
        unsafe { t.free(b.as_ptr()) };
    }
}

/// A valid file of `sample()`, as JSON to damage.
fn dumped() -> Value {
    let mut out = Vec::new();
    sample().dump_to(&mut out).unwrap();
    serde_json::from_slice(&out).unwrap()
}

fn load(v: &Value) -> Result<Snapshot, SnapshotFileError> {
    Snapshot::load_from(serde_json::to_vec(v).unwrap().as_slice())
}

#[test]
fn a_bad_snapshot_file_is_refused_with_what_is_wrong() {
    assert!(load(&dumped()).is_ok());

    let missing = std::env::temp_dir().join("alloc-debug-no-such-dir/none.json");
    assert!(matches!(
        Snapshot::load(&missing),
        Err(SnapshotFileError::Io(_))
    ));

    let not_json = Snapshot::load_from(&b"{\"format\": "[..]);
    assert!(
        matches!(not_json, Err(SnapshotFileError::Json(_))),
        "{not_json:?}"
    );

    // Another JSON file (a DHAT profile) is not a snapshot.
    let dhat = serde_json::to_value(sample().to_dhat()).unwrap();
    assert!(matches!(load(&dhat), Err(SnapshotFileError::Format { found }) if found.is_empty()));

    let mut v = dumped();
    v["version"] = 2.into();
    assert!(matches!(
        load(&v),
        Err(SnapshotFileError::Version { found: 2 })
    ));

    let mut v = dumped();
    v["traces"][0][2] = 99.into();
    assert!(matches!(
        load(&v),
        Err(SnapshotFileError::Dangling {
            table: "tracebacks",
            index: 99,
            len: 4
        })
    ));

    let mut v = dumped();
    v["tracebacks"][1][0] = 17.into();
    assert!(matches!(
        load(&v),
        Err(SnapshotFileError::Dangling {
            table: "frames",
            index: 17,
            len: 4
        })
    ));

    let mut v = dumped();
    v["tracebacks"][2] = serde_json::json!([]);
    assert!(matches!(
        load(&v),
        Err(SnapshotFileError::EmptyTraceback { index: 2 })
    ));

    let mut v = dumped();
    v["traces"][0] = serde_json::json!(["zero", 1, 0]);
    assert!(matches!(load(&v), Err(SnapshotFileError::Json(_))));

    let e = load(&{
        let mut v = dumped();
        v["format"] = "pickle".into();
        v
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "not a snapshot file: its format is \"pickle\", not \"domalloc-tracemalloc-snapshot\""
    );
}

#[test]
fn a_sampled_snapshot_keeps_its_interval_through_a_file() {
    let s = sample();
    let sampled = Snapshot::sampled(s.traces().to_vec(), s.traceback_limit(), 4096);
    let mut out = Vec::new();
    sampled.dump_to(&mut out).unwrap();
    let loaded = Snapshot::load_from(&out[..]).unwrap();
    assert_eq!(loaded, sampled);
    assert_eq!(loaded.sample_interval(), Some(4096));
    assert_ne!(
        loaded, s,
        "an exact snapshot of the same traces is another snapshot"
    );
    // The estimates computed from it are the same too.
    assert_eq!(loaded.total_size(), sampled.total_size());
}

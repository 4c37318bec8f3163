//! The run's JSON lines turned into a table of figures against their targets and PNG plots of
//! time and peak RSS against audience size (drawn here, with plotters).

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde_json::Value;

/// The first readable TrueType font: `BENCH_FONT` (a path, or `none` for plots without
/// text), else the usual places of DejaVu / Liberation, else any `.ttf` under /usr/share/fonts.
fn find_font() -> Option<&'static [u8]> {
    let chosen = std::env::var("BENCH_FONT").ok();
    if chosen.as_deref() == Some("none") {
        return None;
    }
    let mut candidates: Vec<PathBuf> = chosen.into_iter().map(PathBuf::from).collect();
    for known in [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    ] {
        candidates.push(known.into());
    }
    candidates.extend(any_ttf(Path::new("/usr/share/fonts"), 4));
    candidates
        .into_iter()
        .find_map(|p| std::fs::read(p).ok())
        .map(|bytes| &*Box::leak(bytes.into_boxed_slice()))
}

fn any_ttf(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && depth > 0 {
            found.extend(any_ttf(&path, depth - 1));
        } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("ttf")) {
            found.push(path);
        }
    }
    found.sort();
    found
}

type Points = Vec<(f64, f64)>;

struct Series {
    name: &'static str,
    points: Points,
    color: RGBColor,
}

fn bounds(series: &[Series], log: bool) -> ((f64, f64), (f64, f64)) {
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).collect();
    let min = |f: fn(&(f64, f64)) -> f64| all.iter().map(f).fold(f64::INFINITY, f64::min);
    let max = |f: fn(&(f64, f64)) -> f64| all.iter().map(f).fold(0.0, f64::max);
    let (x0, x1) = (min(|p| p.0) / 1.5, max(|p| p.0) * 1.5);
    let (y0, y1) = if log { (min(|p| p.1) / 2.0, max(|p| p.1) * 2.0) } else { (0.0, max(|p| p.1) * 1.25) };
    ((x0.max(1.0), x1.max(2.0)), (if log { y0.max(1e-4) } else { y0 }, y1.max(1e-3)))
}

/// One chart: x is the audience size (log), y on a log or linear axis.
fn chart(
    path: &Path,
    title: &str,
    y_desc: &str,
    series: &[Series],
    log_y: bool,
    legend: SeriesLabelPosition,
    text: bool,
) -> anyhow::Result<()> {
    if series.iter().all(|s| s.points.is_empty()) {
        return Ok(());
    }
    let root = BitMapBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ((x0, x1), (y0, y1)) = bounds(series, log_y);
    let mut builder = ChartBuilder::on(&root);
    builder.margin(24);
    if text {
        builder.caption(title, ("sans-serif", 26)).x_label_area_size(56).y_label_area_size(80);
    }
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart.map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut mesh = chart.configure_mesh();
            if text {
                mesh.x_desc("recipients of the source message")
                    .y_desc(y_desc)
                    .x_labels(12)
                    .x_label_formatter(&|x| size_label(*x));
            } else {
                mesh.x_labels(0).y_labels(0);
            }
            mesh.draw().map_err(|e| anyhow::anyhow!("{e}"))?;
            for s in series.iter().filter(|s| !s.points.is_empty()) {
                let color = s.color;
                chart
                    .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(3)))
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .label(s.name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
                chart
                    .draw_series(s.points.iter().map(|p| Circle::new(*p, 5, color.filled())))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            if text {
                chart
                    .configure_series_labels()
                    .position(legend.clone())
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 18))
                    .draw()
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }};
    }
    if log_y {
        draw!(builder.build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale()));
    } else {
        draw!(builder.build_cartesian_2d((x0..x1).log_scale(), y0..y1));
    }
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// 10000 → "10k", 1000000 → "1M".
fn size_label(x: f64) -> String {
    if x >= 1e6 {
        format!("{}M", trim(x / 1e6))
    } else if x >= 1e3 {
        format!("{}k", trim(x / 1e3))
    } else {
        trim(x)
    }
}

fn trim(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_owned)
}

fn f(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, k| v.get(*k)).and_then(Value::as_f64)
}

fn points(lines: &[&Value], x: &[&str], y: &[&str]) -> Points {
    let mut p: Points = lines.iter().filter_map(|l| Some((f(l, x)?, f(l, y)?))).collect();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    p
}

/// Draws the plots into `out` and prints the table of figures (markdown) on stdout.
pub fn run(results: &Path, out: &Path, plots: bool) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(results)?;
    let lines: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    // Raw lines (against the emulators as they are) fill the tables and plots below; the lines
    // measured under the latency model are compared with them in a table of their own, and so
    // are the cross-channel audiences.
    let modelled = |l: &&Value| l["model"] == "latency";
    let of = |bench: &str| -> Vec<&Value> {
        lines.iter().filter(|l| l["bench"] == bench && !modelled(l)).collect()
    };
    let cross = |l: &&Value| l.get("source_channel").is_some_and(|s| *s != l["target"]);
    let (ingest, all_audiences, all_fanouts) = (of("ingest"), of("audience"), of("fanout"));
    let audiences: Vec<&Value> = all_audiences.iter().copied().filter(|l| !cross(l)).collect();
    let under_model: Vec<&Value> = lines.iter().filter(modelled).collect();
    // The email fan-out has a table of its own; the plots compare the push fan-outs by size.
    let (emails, fanouts): (Vec<&Value>, Vec<&Value>) =
        all_fanouts.into_iter().partition(|l| l["channel"] == "email");
    let cold = of("cold_start");
    let quiet = of("quiet_hours");

    if plots {
        std::fs::create_dir_all(out)?;
        let font = find_font();
        if let Some(bytes) = font {
            let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes);
        } else {
            eprintln!("report: no TrueType font found (set BENCH_FONT): plots are drawn without text");
        }
        let r = ["recipients"];
        chart(
            &out.join("audience-time.png"),
            "Audience time vs size (not_clicked; best of the rounds)",
            "seconds (log)",
            &[
                Series {
                    name: "count (ours)",
                    points: points(&audiences, &r, &["count_seconds"]),
                    color: BLUE,
                },
                Series {
                    name: "paged export, 1000/page (ours)",
                    points: points(&audiences, &r, &["export_seconds"]),
                    color: MAGENTA,
                },
                Series {
                    name: "raw parallel Query, keys only",
                    points: points(&audiences, &r, &["raw_seconds"]),
                    color: GREEN,
                },
                Series {
                    name: "naive Scan + filter",
                    points: points(&audiences, &r, &["naive", "seconds"]),
                    color: RED,
                },
                Series {
                    name: "fan-out dispatch (scheduler tick)",
                    points: points(&fanouts, &["source_recipients"], &["wall_seconds"]),
                    color: BLACK,
                },
            ],
            true,
            SeriesLabelPosition::UpperLeft,
            font.is_some(),
        )?;
        chart(
            &out.join("audience-rss.png"),
            "Peak RSS of the measuring process vs size",
            "peak RSS, MiB",
            &[
                Series {
                    name: "audience count + export (ours)",
                    points: points(&audiences, &r, &["peak_rss_mib"]),
                    color: BLUE,
                },
                Series {
                    name: "scheduler dispatch (ours)",
                    points: points(&fanouts, &["source_recipients"], &["peak_rss_mib"]),
                    color: BLACK,
                },
                Series {
                    name: "raw parallel Query, keys only (its own peak)",
                    points: points(&audiences, &r, &["raw_peak_rss_mib"]),
                    color: GREEN,
                },
                Series {
                    name: "naive Scan + filter (its own peak)",
                    points: points(&audiences, &r, &["naive", "peak_rss_mib"]),
                    color: RED,
                },
                Series { name: "target 64 MiB", points: target_line(&audiences, 64.0), color: CYAN },
            ],
            false,
            SeriesLabelPosition::MiddleRight,
            font.is_some(),
        )?;
    }
    print!("{}", table(&ingest, &audiences, &fanouts, &cold));
    print!("{}", quiet_table(&quiet));
    print!("{}", email_table(&emails));
    print!("{}", model_table(&lines.iter().filter(|l| !modelled(l)).collect::<Vec<_>>(), &under_model));
    Ok(())
}

/// What identifies one measurement across the raw and the modelled run: the bench, its size,
/// its writers (ingest), its target channel (audiences) and, for a fan-out, its channel.
fn measurement(l: &Value) -> (String, u64, u64, String) {
    let size = ["recipients", "events"].iter().find_map(|k| l[*k].as_u64()).unwrap_or(0);
    let target = ["target", "channel"].iter().find_map(|k| l[*k].as_str()).unwrap_or("").to_owned();
    (l["bench"].as_str().unwrap_or("").to_owned(), size, l["writers"].as_u64().unwrap_or(1), target)
}

/// Every ratio of the ingest, audience and fan-out benches, raw and under the latency model, side
/// by side (same data, same run), with the share of requests the emulator itself made slower
/// than the model.
fn model_table(raw: &[&Value], modelled: &[&Value]) -> String {
    if modelled.is_empty() {
        return String::new();
    }
    let mut t = String::from(
        "\n| figure (raw emulator vs latency model) | raw | latency model | target (model) | verdict |\n|---|---|---|---|---|\n",
    );
    let p2 = |x: f64| format!("{x:.2}");
    let p3 = |x: f64| format!("{x:.3}");
    let mut sorted: Vec<&&Value> = modelled.iter().collect();
    sorted.sort_by_key(|l| measurement(l));
    for m in sorted {
        let key = measurement(m);
        let Some(r) = raw.iter().find(|r| measurement(r) == key) else { continue };
        let (bench, n, writers, target) = key;
        let mut pair = |figure: String,
                        path: &[&str],
                        fmt: &dyn Fn(f64) -> String,
                        target: &str,
                        ok: Option<fn(f64) -> bool>| {
            let (raw, model) = (f(r, path), f(m, path));
            let shown = |v: Option<f64>| v.map_or("n/a".to_owned(), fmt);
            let verdict = verdict(ok.and_then(|ok| model.map(ok)));
            t.push_str(&format!("| {figure} | {} | {} | {target} | {verdict} |\n", shown(raw), shown(model)));
        };
        match bench.as_str() {
            "audience" => {
                let what = if m["source_channel"] == m["target"] {
                    format!("audience {n}")
                } else {
                    format!("audience {n} → {target}")
                };
                pair(
                    format!("{what}: count / raw Query throughput"),
                    &["count_over_raw_throughput"],
                    &p2,
                    "≥ 0.8",
                    Some(|x| x >= 0.8),
                );
                pair(
                    format!("{what}: paged export / raw Query throughput"),
                    &["export_over_raw_throughput"],
                    &p2,
                    "≥ 0.8",
                    Some(|x| x >= 0.8),
                );
                pair(
                    format!("{what}: count / raw Query throughput, emulator's excess removed (estimate)"),
                    &["emulator_excess_removed", "count_over_raw_throughput"],
                    &p2,
                    "≥ 0.8",
                    Some(|x| x >= 0.8),
                );
                pair(
                    format!(
                        "{what}: paged export / raw Query throughput, emulator's excess removed (estimate)"
                    ),
                    &["emulator_excess_removed", "export_over_raw_throughput"],
                    &p2,
                    "≥ 0.8",
                    Some(|x| x >= 0.8),
                );
                pair(format!("{what}: count, s"), &["count_seconds"], &p3, "(time)", None);
                pair(format!("{what}: raw Query, s"), &["raw_seconds"], &p3, "(time)", None);
                pair(format!("{what}: peak RSS, MiB"), &["peak_rss_mib"], &p2, "≤ 64", Some(|x| x <= 64.0));
                let units = |l: &Value| {
                    f(l, &["count_dynamodb", "billed_read_units"])
                        .zip(f(l, &["raw_dynamodb", "billed_read_units"]))
                        .map(|(ours, raw)| ours / raw)
                };
                let (ru, mu) = (units(r), units(m));
                let verdict = verdict(mu.map(|x| x <= 2.0));
                let shown = |v: Option<f64>| v.map_or("n/a".to_owned(), p2);
                t.push_str(&format!(
                    "| {what}: our count / raw Query, read units × | {} | {} | ≤ 2 | {verdict} |\n",
                    shown(ru),
                    shown(mu)
                ));
            }
            "ingest" => {
                let what = if writers > 1 {
                    format!("ingest {n} ({writers} writers)")
                } else {
                    format!("ingest {n}")
                };
                pair(
                    format!("{what}: events per second"),
                    &["events_per_second"],
                    &|x| format!("{x:.1}"),
                    "(rate)",
                    None,
                );
                pair(
                    format!("{what}: naive UpdateItem/event: wall time ×"),
                    &["naive_over_ours_wall"],
                    &p2,
                    "(ratio)",
                    None,
                );
            }
            "fanout" => {
                pair(
                    format!("fan-out {n} ({target}): dispatch wall time, s"),
                    &["wall_seconds"],
                    &p3,
                    "(time)",
                    None,
                );
                pair(
                    format!("fan-out {n} ({target}): recipients per SQS request"),
                    &["recipients_per_sqs_request"],
                    &|x| format!("{x:.1}"),
                    "≥ 500",
                    Some(|x| x >= 500.0),
                );
            }
            _ => continue,
        }
        let share = f(m, &["latency", "dynamodb", "emulator_bound"])
            .zip(f(m, &["latency", "dynamodb", "requests"]))
            .map(|(bound, all)| if all > 0.0 { bound / all } else { 0.0 });
        let excess = f(m, &["latency", "dynamodb", "emulator_excess_ms"]).unwrap_or(0.0);
        t.push_str(&format!(
            "| {bench} {n} {target}: DynamoDB requests the emulator made slower than the model | | {} ({excess:.0} ms over) | (info) | n/a |\n",
            share.map_or("n/a".to_owned(), |s| format!("{:.1} %", s * 100.0)),
        ));
    }
    t
}

fn target_line(lines: &[&Value], y: f64) -> Points {
    let xs = points(lines, &["recipients"], &["recipients"]);
    match (xs.first(), xs.last()) {
        (Some(a), Some(b)) => vec![(a.0, y), (b.0, y)],
        _ => Vec::new(),
    }
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "pass",
        Some(false) => "**short**",
        None => "n/a",
    }
}

fn row(
    out: &mut String,
    figure: &str,
    value: Option<f64>,
    fmt: &dyn Fn(f64) -> String,
    target: &str,
    ok: Option<bool>,
) {
    let shown = value.map_or("n/a".to_owned(), fmt);
    out.push_str(&format!("| {figure} | {shown} | {target} | {} |\n", verdict(ok)));
}

fn table(ingest: &[&Value], audiences: &[&Value], fanouts: &[&Value], cold: &[&Value]) -> String {
    let mut t = String::from("| figure | measured | target | verdict |\n|---|---|---|---|\n");
    let p2 = |x: f64| format!("{x:.2}");
    let p1 = |x: f64| format!("{x:.1}");
    let p3 = |x: f64| format!("{x:.3}");
    let pct = |x: f64| format!("{:.1} %", x * 100.0);
    let money = |x: f64| format!("${x:.3}");
    for l in ingest {
        let n = match l["writers"].as_u64().unwrap_or(1) {
            1 => l["events"].as_u64().unwrap_or(0).to_string(),
            w => format!("{} ({w} writers)", l["events"].as_u64().unwrap_or(0)),
        };
        // Exact answers take one conditional PutItem per new event (plus a BatchGetItem per
        // 100 to skip known duplicates): about one event per request, by design.
        let epr = f(l, &["events_per_dynamodb_request"]);
        row(
            &mut t,
            &format!("ingest {n}: events per DynamoDB request (one conditional put per event)"),
            epr,
            &p2,
            "≥ 0.95",
            epr.map(|x| x >= 0.95),
        );
        let eps = f(l, &["events_per_second"]);
        row(&mut t, &format!("ingest {n}: events per second (DynamoDB Local)"), eps, &p1, "(rate)", None);
        // Before issue 13 the writers updated the counters themselves (no aggregator).
        let aggregator = f(l, &["stats_aggregator", "write_units_per_event"]).unwrap_or(0.0);
        let total = f(l, &["write_units_per_event"]).map(|a| a + aggregator);
        let what = format!("ingest {n}: write units per event, counters included");
        row(&mut t, &what, total, &p3, "≤ 1.1", total.map(|x| x <= 1.1));
        let hot = f(l, &["hottest", "item_wcu_per_s_at_16k_events_per_s"]);
        let what = format!("ingest {n}: hottest item's write units/s at 16k events/s (on paper)");
        row(&mut t, &what, hot, &p1, "< 1000", hot.map(|x| x < 1000.0));
        let hot_pk = f(l, &["hottest", "partition_key_wcu_per_s_at_16k_events_per_s"]);
        let what = format!("ingest {n}: hottest partition key's write units/s at 16k events/s (on paper)");
        row(&mut t, &what, hot_pk, &p1, "(split for heat by sk)", None);
        let counter = f(l, &["hottest", "counter_item_writes_per_invocation"]);
        let what = format!("ingest {n}: writes of the hottest counter item per aggregator invocation");
        row(&mut t, &what, counter, &p2, "≤ 1", counter.map(|x| x <= 1.0));
        let cw = f(l, &["cpu_over_wall"]);
        row(&mut t, &format!("ingest {n}: our CPU / wall time"), cw, &pct, "≤ 5 %", cw.map(|x| x <= 0.05));
        let iw = f(l, &["items_written_per_event"]);
        let what = format!("ingest {n}: write units per event (items written, each < 1 KB)");
        row(&mut t, &what, iw, &p3, "≤ 1", iw.map(|x| x <= 1.0));
        let wu = f(l, &["write_units_per_event"]);
        let what =
            format!("ingest {n}: write units per event as DynamoDB Local counts them (+ stats counter)");
        row(&mut t, &what, wu, &p3, "(cross-check)", None);
        let sw = f(l, &["stats_aggregator", "write_units_per_event"]);
        let what = format!("ingest {n}: stats counters, write units per event (aggregator, from the stream)");
        row(&mut t, &what, sw, &p3, "(cost)", None);
        let rr = f(l, &["naive_over_ours_requests"]);
        row(&mut t, &format!("ingest {n}: naive UpdateItem/event: requests ×"), rr, &p1, "(ratio)", None);
        let rw = f(l, &["naive_over_ours_wall"]);
        row(&mut t, &format!("ingest {n}: naive UpdateItem/event: wall time ×"), rw, &p2, "(ratio)", None);
    }
    let mut sorted: Vec<&&Value> = audiences.iter().collect();
    sorted.sort_by_key(|l| l["recipients"].as_u64());
    for l in &sorted {
        let n = l["recipients"].as_u64().unwrap_or(0);
        let c = f(l, &["count_over_raw_throughput"]);
        row(
            &mut t,
            &format!("audience {n}: count / raw Query throughput"),
            c,
            &p2,
            "≥ 0.8",
            c.map(|x| x >= 0.8),
        );
        let e = f(l, &["export_over_raw_throughput"]);
        row(
            &mut t,
            &format!("audience {n}: paged export / raw Query throughput"),
            e,
            &p2,
            "≥ 0.8",
            e.map(|x| x >= 0.8),
        );
        let r = f(l, &["peak_rss_mib"]);
        row(&mut t, &format!("audience {n}: peak RSS, MiB"), r, &p1, "≤ 64", r.map(|x| x <= 64.0));
        let nv = f(l, &["naive", "naive_over_ours_count_time"]);
        let what = format!("audience {n}: naive Scan / our count, time × (DynamoDB Local)");
        row(&mut t, &what, nv, &p2, "(ratio)", None);
        let ru = f(l, &["naive", "dynamodb", "billed_read_units"])
            .zip(f(l, &["count_dynamodb", "billed_read_units"]))
            .map(|(naive, ours)| naive / ours);
        row(&mut t, &format!("audience {n}: naive Scan / our count, read units ×"), ru, &p2, "(ratio)", None);
        let rr = f(l, &["count_dynamodb", "billed_read_units"])
            .zip(f(l, &["raw_dynamodb", "billed_read_units"]))
            .map(|(ours, raw)| ours / raw);
        row(&mut t, &format!("audience {n}: our count / raw Query, read units ×"), rr, &p1, "(ratio)", None);
    }
    // "Flat from 100k to 1 M": judged from the smallest size of at least 100k to the largest;
    // below that the process's baseline dominates and the growth is shown for information.
    let from = sorted.iter().find(|l| l["recipients"].as_u64() >= Some(100_000)).or(sorted.first());
    if let (Some(small), Some(big)) = (from, sorted.last())
        && small["recipients"] != big["recipients"]
    {
        let growth = f(big, &["peak_rss_mib"]).zip(f(small, &["peak_rss_mib"])).map(|(b, s)| b / s - 1.0);
        let judged = small["recipients"].as_u64() >= Some(100_000);
        row(
            &mut t,
            &format!(
                "audience peak RSS growth {} → {}",
                small["recipients"].as_u64().unwrap_or(0),
                big["recipients"].as_u64().unwrap_or(0)
            ),
            growth,
            &pct,
            if judged { "flat (≤ 10 %)" } else { "(judged from 100k up)" },
            growth.filter(|_| judged).map(|g| g <= 0.10),
        );
    }
    for l in fanouts {
        let n = l["recipients"].as_u64().unwrap_or(0);
        let rpr = f(l, &["recipients_per_sqs_request"]);
        row(
            &mut t,
            &format!("fan-out {n}: recipients per SQS request"),
            rpr,
            &p1,
            "≥ 500",
            rpr.map(|x| x >= 500.0),
        );
        let reqs = f(l, &["sqs_send_message_batch"]);
        row(
            &mut t,
            &format!("fan-out {n}: SQS requests (naive: {n})"),
            reqs,
            &|x| format!("{x:.0}"),
            "(count)",
            None,
        );
        // SQS bills each 64 KiB of a payload as one request.
        let billed = reqs.zip(f(l, &["cost", "sqs_chunks_per_batch"])).map(|(r, c)| n as f64 / (r * c));
        let what = format!("fan-out {n}: recipients per billed SQS request (64 KiB chunks)");
        row(&mut t, &what, billed, &p1, "(info)", None);
        let rss = f(l, &["peak_rss_mib"]);
        row(
            &mut t,
            &format!("fan-out {n}: scheduler peak RSS, MiB"),
            rss,
            &p1,
            "≤ 64",
            rss.map(|x| x <= 64.0),
        );
        let d = f(l, &["cost", "dispatch_dollars"]);
        row(&mut t, &format!("fan-out {n}: dispatch cost per 1 M recipients"), d, &money, "(part)", None);
        let stats_lines =
            ["dynamodb_stats_writes", "dynamodb_stats_reads", "lambda_stats_gb_s", "lambda_stats_requests"];
        let s = stats_lines
            .iter()
            .map(|line| f(l, &["cost", "per_million_recipients", line, "dollars"]))
            .sum::<Option<f64>>();
        let what = format!("fan-out {n}: stats counters of the sends per 1 M recipients (aggregator)");
        row(&mut t, &what, s, &money, "(part)", None);
        let c = f(l, &["cost", "total_dollars"]);
        row(
            &mut t,
            &format!("fan-out {n}: all-in cost per 1 M recipients"),
            c,
            &money,
            "≤ $2.50",
            c.map(|x| x <= 2.5),
        );
    }
    for l in cold {
        let name = l["function"].as_str().unwrap_or("?");
        let starts = l["starts"].as_u64().unwrap_or(0);
        let ms = |x: f64| format!("{x:.1} ms");
        let median = f(l, &["median_ms"]);
        let what = format!("cold start {name}: process start → first poll, median of {starts}");
        row(&mut t, &what, median, &ms, "≤ 10 ms", median.map(|x| x <= 10.0));
        let p90 = f(l, &["p90_ms"]);
        row(&mut t, &format!("cold start {name}: p90"), p90, &ms, "(info)", None);
        let zip = f(l, &["arm64_zip_bytes"]);
        let mb = |x: f64| format!("{:.2} MB", x / 1e6);
        let what = format!("cold start {name}: arm64 bootstrap.zip (cargo lambda build --release --arm64)");
        row(&mut t, &what, zip, &mb, "≤ 4 MB", zip.map(|x| x <= 4e6));
    }
    t
}

/// The quiet-hours bench: what deferring and releasing cost per recipient, the scheduler's
/// memory, and how late each zone's recipients were released after their window ended.
/// The email fan-out: what dispatching N emails asks of SQS and DynamoDB, and the email
/// sender's own CPU per email (SES a stand-in answering at once).
fn email_table(emails: &[&Value]) -> String {
    let mut t = String::new();
    let p1 = |x: f64| format!("{x:.1}");
    let p3 = |x: f64| format!("{x:.3}");
    for l in emails {
        let n = l["recipients"].as_u64().unwrap_or(0);
        if t.is_empty() {
            t.push_str("\n| email fan-out (SES) | measured | target | verdict |\n|---|---|---|---|\n");
        }
        let reqs = f(l, &["sqs_send_message_batch"]);
        row(
            &mut t,
            &format!("email {n}: SQS requests to enqueue (naive: {n})"),
            reqs,
            &|x| format!("{x:.0}"),
            "(count)",
            None,
        );
        let rpr = f(l, &["recipients_per_sqs_request"]);
        row(
            &mut t,
            &format!("email {n}: recipients per SQS request"),
            rpr,
            &p1,
            "≥ 500",
            rpr.map(|x| x >= 500.0),
        );
        let w = f(l, &["sender_sample", "write_units_per_recipient"]);
        row(&mut t, &format!("email {n}: sender write units per email"), w, &p3, "(cost)", None);
        let r = f(l, &["sender_sample", "dynamodb_requests_per_recipient"]);
        row(&mut t, &format!("email {n}: sender DynamoDB requests per email"), r, &p3, "(cost)", None);
        let cpu = f(l, &["sender_sample", "cpu_ms_per_recipient"]);
        row(&mut t, &format!("email {n}: sender CPU per email, ms"), cpu, &p3, "(cost)", None);
        let rss = f(l, &["peak_rss_mib"]);
        row(&mut t, &format!("email {n}: scheduler peak RSS, MiB"), rss, &p1, "≤ 64", rss.map(|x| x <= 64.0));
    }
    t
}

fn quiet_table(quiet: &[&Value]) -> String {
    let mut t = String::new();
    let p1 = |x: f64| format!("{x:.1}");
    let p3 = |x: f64| format!("{x:.3}");
    let p4 = |x: f64| format!("{x:.4}");
    let s0 = |x: f64| format!("{x:.0} s");
    for l in quiet {
        let n = l["recipients"].as_u64().unwrap_or(0);
        if t.is_empty() {
            t.push_str("\n| quiet hours (SMS, ten zones, all inside 21:00–08:00) | measured | target | verdict |\n|---|---|---|---|\n");
        }
        let v = f(l, &["deferral", "deferral_write_requests_per_recipient"]);
        row(
            &mut t,
            &format!("quiet {n}: deferral writes per recipient (one per job and release instant)"),
            v,
            &p4,
            "(cost)",
            None,
        );
        let v = f(l, &["deferral", "deferral_write_units_per_recipient"]);
        row(&mut t, &format!("quiet {n}: deferral write units per recipient"), v, &p3, "(cost)", None);
        let v = f(l, &["deferral", "recipients_per_deferral"]);
        row(&mut t, &format!("quiet {n}: recipients per deferral"), v, &p1, "(grouping)", None);
        let v = f(l, &["release", "dynamodb_requests_per_recipient"]);
        row(&mut t, &format!("quiet {n}: release, DynamoDB requests per recipient"), v, &p4, "(cost)", None);
        let v = f(l, &["release", "write_units_per_recipient"]);
        row(&mut t, &format!("quiet {n}: release, write units per recipient"), v, &p3, "(cost)", None);
        let v = f(l, &["release", "scheduler_peak_rss_mib"]);
        row(
            &mut t,
            &format!("quiet {n}: scheduler peak RSS over the release ticks, MiB"),
            v,
            &p1,
            "≤ 64",
            v.map(|x| x <= 64.0),
        );
        let v = f(l, &["dispatch", "peak_rss_mib"]);
        row(
            &mut t,
            &format!("quiet {n}: peak RSS while dispatching, MiB"),
            v,
            &p1,
            "≤ 64",
            v.map(|x| x <= 64.0),
        );
        let v = f(l, &["release", "released_early"]);
        row(
            &mut t,
            &format!("quiet {n}: recipients released before their window ended"),
            v,
            &|x| format!("{x:.0}"),
            "0",
            v.map(|x| x == 0.0),
        );
        let v = f(l, &["release", "latest_after_window_end_s"]);
        row(
            &mut t,
            &format!("quiet {n}: latest release after a window's end (ticks every 60 s)"),
            v,
            &s0,
            "< 60 s",
            v.map(|x| x < 60.0),
        );
        let v = f(l, &["release", "busiest_tick_deferrals"]);
        row(
            &mut t,
            &format!("quiet {n}: deferrals released by the busiest tick"),
            v,
            &|x| format!("{x:.0}"),
            "(info)",
            None,
        );
        let v = f(l, &["release", "slowest_tick_seconds"]);
        row(
            &mut t,
            &format!("quiet {n}: slowest release tick (emulators)"),
            v,
            &|x| format!("{x:.1} s"),
            "(info)",
            None,
        );
    }
    t
}

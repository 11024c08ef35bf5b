//! `metrics.svg`: reward, agreement, kept ratio and evaluation accuracy per
//! step, four small line charts in one self-contained SVG file.

use std::fmt::Write;

use super::{EvalResult, StepStats};

struct Series<'a> {
    label: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

fn panel(out: &mut String, x0: f64, y0: f64, title: &str, series: &[Series], max_step: f64) {
    let (w, h) = (360.0, 200.0);
    let (l, r, t, b) = (40.0, 10.0, 24.0, 28.0);
    let (pw, ph) = (w - l - r, h - t - b);
    let _ = write!(out, r#"<g transform="translate({x0},{y0})">"#);
    let _ = write!(
        out,
        r#"<text x="{}" y="16" font-size="13" font-weight="bold">{title}</text>"#,
        l
    );
    let _ = write!(
        out,
        r##"<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
    );
    for k in 0..=4 {
        let v = k as f64 / 4.0;
        let y = t + ph * (1.0 - v);
        let _ = write!(
            out,
            r##"<line x1="{l}" x2="{}" y1="{y}" y2="{y}" stroke="#eee"/>"##,
            l + pw
        );
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" font-size="10" text-anchor="end">{v:.2}</text>"#,
            l - 4.0,
            y + 3.0
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" font-size="10" text-anchor="middle">step</text>"#,
        l + pw / 2.0,
        h - 4.0
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" font-size="10">0</text>"#,
        l,
        t + ph + 12.0
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" font-size="10" text-anchor="end">{max_step}</text>"#,
        l + pw,
        t + ph + 12.0
    );
    let sx = |s: f64| l + pw * if max_step > 0.0 { s / max_step } else { 0.0 };
    let sy = |v: f64| t + ph * (1.0 - v.clamp(0.0, 1.0));
    for (i, s) in series.iter().enumerate() {
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        if pts.len() > 1 {
            let _ = write!(
                out,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.8" points="{}"/>"#,
                s.color,
                pts.join(" ")
            );
        }
        for &(x, y) in &s.points {
            let _ = write!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.2" fill="{}"/>"#,
                sx(x),
                sy(y),
                s.color
            );
        }
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" font-size="10" fill="{}">{}</text>"#,
            l + 6.0 + 110.0 * i as f64,
            t + 12.0,
            s.color,
            s.label
        );
    }
    out.push_str("</g>");
}

/// The SVG document for a run's step statistics and evaluations.
pub fn metrics_svg(history: &[StepStats], evals: &[EvalResult]) -> String {
    let max_step = history
        .iter()
        .map(|s| s.step)
        .chain(evals.iter().map(|e| e.step))
        .max()
        .unwrap_or(0) as f64;
    let pts = |f: &dyn Fn(&StepStats) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter_map(|s| f(s).map(|v| (s.step as f64, v)))
            .collect()
    };
    let mut out = String::from(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="740" height="420" font-family="sans-serif">"#,
    );
    out.push_str(r#"<rect width="740" height="420" fill="white"/>"#);
    panel(
        &mut out,
        0.0,
        0.0,
        "mean reward (trained groups)",
        &[
            Series {
                label: "reward",
                color: "#1f77b4",
                points: pts(&|s| Some(s.reward_mean)),
            },
            Series {
                label: "kept label acc.",
                color: "#9467bd",
                points: pts(&|s| s.kept_label_accuracy),
            },
        ],
        max_step,
    );
    panel(
        &mut out,
        370.0,
        0.0,
        "agreement (all scored groups)",
        &[
            Series {
                label: "agreement",
                color: "#2ca02c",
                points: pts(&|s| Some(s.agreement_mean)),
            },
            Series {
                label: "label acc.",
                color: "#9467bd",
                points: pts(&|s| s.label_accuracy),
            },
        ],
        max_step,
    );
    panel(
        &mut out,
        0.0,
        210.0,
        "kept ratio (difficulty filter)",
        &[Series {
            label: "kept / scored",
            color: "#ff7f0e",
            points: pts(&|s| {
                let scored = s.kept + s.difficulty_filtered + s.expired;
                (scored > 0).then(|| s.kept as f64 / scored as f64)
            }),
        }],
        max_step,
    );
    let ev = |f: &dyn Fn(&EvalResult) -> Option<f64>| -> Vec<(f64, f64)> {
        evals
            .iter()
            .filter_map(|e| f(e).map(|v| (e.step as f64, v)))
            .collect()
    };
    panel(
        &mut out,
        370.0,
        210.0,
        "evaluation accuracy",
        &[
            Series {
                label: "pass@1",
                color: "#d62728",
                points: ev(&|e| Some(e.pass_at_1)),
            },
            Series {
                label: "maj@k",
                color: "#8c564b",
                points: ev(&|e| e.maj_at_k),
            },
            Series {
                label: "avg@k",
                color: "#17becf",
                points: ev(&|e| e.avg_at_k),
            },
        ],
        max_step,
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_line_per_series_with_data() {
        let history: Vec<StepStats> = (1..=3)
            .map(|i| StepStats {
                step: i,
                reward_mean: 0.1 * i as f64,
                agreement_mean: 0.5,
                kept: 2,
                difficulty_filtered: 2,
                kept_label_accuracy: Some(0.5),
                ..Default::default()
            })
            .collect();
        let evals = vec![
            EvalResult {
                step: 0,
                pass_at_1: 0.2,
                maj_at_k: Some(0.3),
                avg_at_k: Some(0.25),
                k: 4,
                questions: 10,
            },
            EvalResult {
                step: 3,
                pass_at_1: 0.4,
                maj_at_k: Some(0.5),
                avg_at_k: Some(0.35),
                k: 4,
                questions: 10,
            },
        ];
        let svg = metrics_svg(&history, &evals);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // reward and the kept groups' label accuracy, agreement (no label
        // accuracy of all groups: none recorded), kept ratio, and the three
        // evaluation series.
        assert_eq!(svg.matches("<polyline").count(), 7);
        assert!(svg.contains("evaluation accuracy"));
    }
}

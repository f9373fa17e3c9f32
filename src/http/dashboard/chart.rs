//! Line charts drawn here as SVG: no chart library, no script, nothing for the Content-Security-Policy
//! to allow. One line per series over shared x positions, a grid with the y axis's values, a few
//! dates on the x axis, and per x position a hover target whose title lists every series' value
//! there (a native tooltip). Colours come from the stylesheet (`.s0` to `.s9`), which the legend
//! shares.

use maud::{Markup, html};

/// The drawing's size in SVG units (it scales to the page's width).
const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 260.0;
/// Room for the y axis's labels, the x axis's labels, and a margin.
const LEFT: f64 = 64.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 12.0;
const RIGHT: f64 = 12.0;
/// Colours the stylesheet defines.
pub(super) const COLOURS: usize = 10;
/// Most labels on the x axis.
const X_LABELS: usize = 8;
/// Up to this many x positions, each value is also marked with a dot (a line of one point is only
/// its dot).
const DOTS_UP_TO: usize = 48;

/// One line of a chart.
pub(super) struct Series<'a> {
    /// Its name, for the legend and the tooltips.
    pub name: &'a str,
    /// Its values, one per x position.
    pub values: Vec<f64>,
}

/// A line chart of `series` over the x positions labelled `labels`, values shown with `format`.
pub(super) fn line_chart(title: &str, labels: &[String], series: &[Series<'_>], format: fn(f64) -> String) -> Markup {
    let top = nice_ceiling(series.iter().flat_map(|s| s.values.iter().copied()).fold(0.0, f64::max));
    let (plot_width, plot_height) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let step = if labels.len() > 1 { plot_width / (labels.len() - 1) as f64 } else { 0.0 };
    let x = |i: usize| LEFT + if labels.len() > 1 { step * i as f64 } else { plot_width / 2.0 };
    let y = |value: f64| TOP + plot_height * (1.0 - value / top);
    let label_every = labels.len().div_ceil(X_LABELS).max(1);
    let hover_width = if labels.len() > 1 { step } else { plot_width };
    html! {
        figure.chart {
            figcaption { (title) }
            svg.chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(title) data-series=(series.len()) {
                @for tick in 0..=4 {
                    @let value = top * f64::from(tick) / 4.0;
                    line.grid x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y(value)) y2=(y(value)) {}
                    text.axis x=(LEFT - 6.0) y=(y(value) + 4.0) text-anchor="end" { (format(value)) }
                }
                @for (i, label) in labels.iter().enumerate().filter(|(i, _)| i % label_every == 0) {
                    text.axis x=(x(i)) y=(HEIGHT - 8.0) text-anchor="middle" { (label) }
                }
                @for (index, line) in series.iter().enumerate() {
                    polyline class={ "line s" (index % COLOURS) } data-name=(line.name) points=(points(&line.values, x, y)) {}
                    @if labels.len() <= DOTS_UP_TO {
                        @for (i, value) in line.values.iter().enumerate() {
                            circle class={ "dot s" (index % COLOURS) } cx=(format!("{:.1}", x(i))) cy=(format!("{:.1}", y(*value))) r="3" {}
                        }
                    }
                }
                @for (i, label) in labels.iter().enumerate() {
                    rect.hover x=(x(i) - hover_width / 2.0) y=(TOP) width=(hover_width) height=(plot_height) {
                        title { (tooltip(label, i, series, format)) }
                    }
                }
            }
            ul.legend {
                @for (index, line) in series.iter().enumerate() {
                    li { span class={ "swatch s" (index % COLOURS) } {} (line.name) }
                }
            }
        }
    }
}

/// A polyline's points: `x,y x,y ...`.
fn points(values: &[f64], x: impl Fn(usize) -> f64, y: impl Fn(f64) -> f64) -> String {
    values.iter().enumerate().map(|(i, &value)| format!("{:.1},{:.1}", x(i), y(value))).collect::<Vec<_>>().join(" ")
}

/// The tooltip of one x position: its label, then each series with a value there, largest first.
fn tooltip(label: &str, i: usize, series: &[Series<'_>], format: fn(f64) -> String) -> String {
    let mut values: Vec<(&str, f64)> =
        series.iter().filter_map(|s| Some((s.name, *s.values.get(i)?))).filter(|(_, v)| *v > 0.0).collect();
    values.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut text = label.to_owned();
    for (name, value) in values {
        text.push_str(&format!("\n{name}: {}", format(value)));
    }
    text
}

/// The axis's top: the smallest of 1, 2, 2.5 or 5 times a power of ten at or above `max` (1 for
/// an empty chart).
fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].into_iter().map(|m| m * power).find(|&top| top >= max).unwrap_or(10.0 * power)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(value: f64) -> String {
        format!("{value:.0}")
    }

    #[test]
    fn the_axis_top_is_a_round_number_at_or_above_the_largest_value() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(10.0), 10.0);
        assert_eq!(nice_ceiling(180.0), 200.0);
        assert_eq!(nice_ceiling(2100.0), 2500.0);
        assert_eq!(nice_ceiling(0.03), 0.05);
    }

    #[test]
    fn each_series_is_a_line_through_its_values() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let series = [Series { name: "A", values: vec![0.0, 5.0, 10.0] }, Series { name: "B", values: vec![10.0; 3] }];
        let svg = line_chart("Clicks", &labels, &series, whole).into_string();
        // A from the bottom of the plot to its top; B along the top.
        let bottom = HEIGHT - BOTTOM;
        assert!(
            svg.contains(&format!("points=\"{LEFT:.1},{bottom:.1} 426.0,{:.1} 788.0,{TOP:.1}\"", (bottom + TOP) / 2.0)),
            "{svg}"
        );
        assert!(svg.contains(&format!("points=\"{LEFT:.1},{TOP:.1} 426.0,{TOP:.1} 788.0,{TOP:.1}\"")), "{svg}");
        assert!(svg.contains("<title>c\nA: 10\nB: 10</title>"), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 2);
    }

    #[test]
    fn names_are_escaped() {
        let series = [Series { name: "<x>", values: vec![1.0] }];
        let svg = line_chart("t", &["d".to_owned()], &series, whole).into_string();
        assert!(!svg.contains("<x>"), "{svg}");
        assert!(svg.contains("&lt;x&gt;"), "{svg}");
    }
}

//! A report's two files, pure: the XLSX workbook (one sheet per part, numbers as
//! numbers) and the printable Chinese HTML page with inline SVG charts. Both are
//! drawn from the same [`ReportData`].

use std::fmt::Write as _;

use rust_xlsxwriter::{Format, Workbook, XlsxError};

use super::{GROUPS, ReportData, level_name};
use crate::api::views::{Level, RankingRow};

/// The sheet names, in order.
pub const SHEETS: [&str; 7] = [
    "概况",
    "咨询类排名",
    "投诉建议类排名",
    "业务办理类排名",
    "签到率",
    "热点问题",
    "质量评查",
];

/// One ranking column: its header and its value in a row.
type Column = (&'static str, fn(&RankingRow) -> Option<f64>);

/// The ranking columns.
fn ranking_columns() -> Vec<Column> {
    vec![
        ("工单数", |r| Some(f64::from(r.orders))),
        ("办结数", |r| Some(f64::from(r.completed))),
        ("办结率", |r| r.completion_rate),
        ("按时办结率", |r| r.on_time_rate),
        ("满意率", |r| r.satisfaction_rate),
        ("签到率", |r| r.sign_in.sign_in_rate),
        ("转办及时率", |r| r.transfer_rate),
        ("退回数", |r| Some(f64::from(r.returns))),
        ("超期数", |r| Some(f64::from(r.overdue))),
        ("综合得分", |r| r.combined_score),
    ]
}

/// The overview lines: label and value (None: no data).
fn overview(data: &ReportData) -> Vec<(&'static str, Option<f64>)> {
    let s = &data.stats;
    let t = &s.transfer.total;
    let f = |v: i64| Some(v as f64);
    vec![
        ("受理工单总数", f(s.total)),
        ("未办结", f(s.open)),
        ("超期工单", f(s.overdue)),
        ("特殊标记工单", f(s.special_flag)),
        ("已评价", f(s.satisfaction.rated)),
        ("满意", f(s.satisfaction.satisfied)),
        ("基本满意", f(s.satisfaction.basically_satisfied)),
        ("不满意", f(s.satisfaction.dissatisfied)),
        ("满意率", s.satisfaction.rate),
        ("转办及时", Some(t.on_time as f64)),
        ("转办超时", Some(t.late as f64)),
        (
            "转办及时率",
            t.on_time_permille.map(|pm| pm as f64 / 1000.0),
        ),
    ]
}

/// The workbook.
///
/// # Errors
/// The writer's errors (none expected for this content).
pub fn xlsx(data: &ReportData) -> Result<Vec<u8>, XlsxError> {
    let mut book = Workbook::new();
    let bold = Format::new().set_bold();
    let percent = Format::new().set_num_format("0.0%");
    {
        let sheet = book.add_worksheet();
        sheet.set_name(SHEETS[0])?;
        sheet.set_column_width(0, 24)?;
        sheet.write_string_with_format(0, 0, &data.title, &bold)?;
        sheet.write_string(1, 0, "统计期间")?;
        sheet.write_string(1, 1, format!("{} 至 {}", data.period_from, data.period_to))?;
        sheet.write_string(2, 0, "生成时间")?;
        sheet.write_string(2, 1, &data.generated_at)?;
        for (i, (label, value)) in overview(data).into_iter().enumerate() {
            let row = 4 + i as u32;
            sheet.write_string(row, 0, label)?;
            if let Some(v) = value {
                if label.ends_with('率') {
                    sheet.write_number_with_format(row, 1, v, &percent)?;
                } else {
                    sheet.write_number(row, 1, v)?;
                }
            }
        }
    }
    for ((_, group_name), ranking) in GROUPS.iter().zip(&data.rankings) {
        let sheet = book.add_worksheet();
        sheet.set_name(format!("{group_name}排名"))?;
        let mut headers = vec!["级别", "名次", "单位"];
        headers.extend(ranking_columns().iter().map(|(h, _)| *h));
        for (c, h) in headers.iter().enumerate() {
            sheet.write_string_with_format(0, c as u16, *h, &bold)?;
        }
        sheet.set_column_width(2, 22)?;
        let mut row = 1u32;
        for (level, rows) in &ranking.levels {
            for r in rows {
                sheet.write_string(row, 0, level_name(*level))?;
                sheet.write_number(row, 1, f64::from(r.rank))?;
                sheet.write_string(row, 2, &r.unit_name)?;
                for (c, (h, value)) in ranking_columns().iter().enumerate() {
                    if let Some(v) = value(r) {
                        let col = 3 + c as u16;
                        if h.ends_with('率') || h.ends_with('分') {
                            sheet.write_number_with_format(row, col, v, &percent)?;
                        } else {
                            sheet.write_number(row, col, v)?;
                        }
                    }
                }
                row += 1;
            }
        }
    }
    {
        let sheet = book.add_worksheet();
        sheet.set_name(SHEETS[4])?;
        for (c, h) in ["单位", "应签到班次", "按时签到班次", "签到率"]
            .iter()
            .enumerate()
        {
            sheet.write_string_with_format(0, c as u16, *h, &bold)?;
        }
        sheet.set_column_width(0, 22)?;
        // The sign-in rate does not depend on the group: the first ranking's list.
        if let Some(ranking) = data.rankings.first() {
            for (i, unit) in ranking.sign_in.iter().enumerate() {
                let row = 1 + i as u32;
                sheet.write_string(row, 0, &unit.unit_name)?;
                if let Some(v) = unit.sign_in.shifts_scheduled {
                    sheet.write_number(row, 1, f64::from(v))?;
                }
                if let Some(v) = unit.sign_in.shifts_signed_in {
                    sheet.write_number(row, 2, f64::from(v))?;
                }
                if let Some(v) = unit.sign_in.sign_in_rate {
                    sheet.write_number_with_format(row, 3, v, &percent)?;
                }
            }
        }
    }
    {
        let sheet = book.add_worksheet();
        sheet.set_name(SHEETS[5])?;
        for (c, h) in [
            "话题",
            "本期工单",
            "前8期均值",
            "热点",
            "难点",
            "焦点",
            "涉及城市",
        ]
        .iter()
        .enumerate()
        {
            sheet.write_string_with_format(0, c as u16, *h, &bold)?;
        }
        for (i, t) in data.topics.iter().enumerate() {
            let row = 1 + i as u32;
            sheet.write_string(row, 0, &t.topic)?;
            sheet.write_number(row, 1, f64::from(t.current))?;
            sheet.write_number(row, 2, t.baseline_mean)?;
            let yes = |b: bool| if b { "是" } else { "" };
            sheet.write_string(row, 3, yes(t.hot))?;
            sheet.write_string(row, 4, yes(t.difficult))?;
            sheet.write_string(row, 5, yes(t.focal))?;
            sheet.write_string(row, 6, t.cities.join("、"))?;
        }
    }
    {
        let sheet = book.add_worksheet();
        sheet.set_name(SHEETS[6])?;
        for (c, h) in ["类别", "对象", "评查件数", "平均得分"].iter().enumerate() {
            sheet.write_string_with_format(0, c as u16, *h, &bold)?;
        }
        sheet.set_column_width(1, 22)?;
        let mut row = 1u32;
        for (what, list) in quality_lists(data) {
            for a in list {
                sheet.write_string(row, 0, what)?;
                sheet.write_string(row, 1, &a.key)?;
                sheet.write_number(row, 2, f64::from(a.reviews))?;
                sheet.write_number(row, 3, a.score)?;
                row += 1;
            }
        }
    }
    book.save_to_buffer()
}

fn quality_lists(data: &ReportData) -> [(&'static str, &[crate::assessment::quality::Average]); 3] {
    [
        ("市", &data.quality.by_city),
        ("单位", &data.quality.by_unit),
        ("人员", &data.quality.by_person),
    ]
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

/// A horizontal bar chart as inline SVG: one bar per (label, value), scaled to the
/// largest.
fn bar_chart(title: &str, bars: &[(String, f64)], as_percent: bool) -> String {
    if bars.is_empty() {
        return String::new();
    }
    let max = bars
        .iter()
        .map(|(_, v)| *v)
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let row_h = 22;
    let height = 30 + row_h * bars.len();
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg role=\"img\" aria-label=\"{}\" \
         width=\"640\" height=\"{height}\" viewBox=\"0 0 640 {height}\" \
         xmlns=\"http://www.w3.org/2000/svg\">",
        escape(title),
        escape(title)
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = 10 + row_h * i;
        let w = (value / max * 400.0).round();
        let shown = if as_percent {
            percent(Some(*value))
        } else {
            format!("{value}")
        };
        let _ = write!(
            svg,
            "<text x=\"150\" y=\"{ty}\" text-anchor=\"end\" font-size=\"13\">{label}</text>\
             <rect x=\"160\" y=\"{y}\" width=\"{w}\" height=\"16\" fill=\"#2f6fb3\"/>\
             <text x=\"{tx}\" y=\"{ty}\" font-size=\"12\">{shown}</text>",
            ty = y + 13,
            label = escape(label),
            tx = 166.0 + w,
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

/// The printable page.
#[must_use]
pub fn html(data: &ReportData) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <title>{title}</title><style>\
         body{{font-family:\"Noto Sans CJK SC\",\"Source Han Sans SC\",\"Microsoft YaHei\",sans-serif;\
         margin:2em;color:#222}}h1{{font-size:22px;text-align:center}}\
         h2{{font-size:17px;border-bottom:1px solid #999;margin-top:1.6em}}\
         table{{border-collapse:collapse;margin:.5em 0;font-size:13px}}\
         th,td{{border:1px solid #888;padding:3px 8px}}td.n{{text-align:right}}\
         figure{{margin:.5em 0}}figcaption{{font-size:13px;color:#444}}\
         @media print{{body{{margin:0}}h2{{page-break-after:avoid}}table,figure{{page-break-inside:avoid}}}}\
         </style></head><body><h1>{title}</h1>\
         <p class=\"meta\">统计期间：{from} 至 {to}（按受理时间）　生成时间：{at}　本报告由系统自动生成，数据不经人工修改。</p>",
        title = escape(&data.title),
        from = data.period_from,
        to = data.period_to,
        at = escape(&data.generated_at),
    );
    page.push_str("<h2>一、总体情况</h2><table id=\"overview\"><tbody>");
    for (label, value) in overview(data) {
        let shown = if label.ends_with('率') {
            percent(value)
        } else {
            value.map_or_else(|| "—".to_owned(), |v| format!("{v}"))
        };
        let _ = write!(
            page,
            "<tr><th>{label}</th><td class=\"n\">{shown}</td></tr>"
        );
    }
    page.push_str("</tbody></table>");

    page.push_str("<h2>二、排名（各级别分别排名，按综合得分）</h2>");
    for ((_, group_name), ranking) in GROUPS.iter().zip(&data.rankings) {
        let _ = write!(page, "<h3>{group_name}</h3>");
        if ranking.rows.is_empty() {
            page.push_str("<p>本期无此类工单。</p>");
            continue;
        }
        for (level, rows) in &ranking.levels {
            if rows.is_empty() {
                continue;
            }
            let _ = write!(
                page,
                "<table class=\"ranking\" data-group=\"{}\" data-level=\"{}\"><caption>{}</caption>\
                 <thead><tr><th>名次</th><th>单位</th>",
                escape(&ranking.group),
                level_key(*level),
                level_name(*level)
            );
            for (h, _) in ranking_columns() {
                let _ = write!(page, "<th>{h}</th>");
            }
            page.push_str("</tr></thead><tbody>");
            for r in rows {
                let _ = write!(
                    page,
                    "<tr><td class=\"n\">{}</td><td>{}</td>",
                    r.rank,
                    escape(&r.unit_name)
                );
                for (h, value) in ranking_columns() {
                    let v = value(r);
                    let shown = if h.ends_with('率') || h.ends_with('分') {
                        percent(v)
                    } else {
                        v.map_or_else(|| "—".to_owned(), |v| format!("{v}"))
                    };
                    let _ = write!(page, "<td class=\"n\">{shown}</td>");
                }
                page.push_str("</tr>");
            }
            page.push_str("</tbody></table>");
            if *level == Level::City {
                let bars: Vec<(String, f64)> = rows
                    .iter()
                    .filter_map(|r| Some((r.unit_name.clone(), r.combined_score?)))
                    .collect();
                page.push_str(&bar_chart(
                    &format!("{group_name}·市级综合得分"),
                    &bars,
                    true,
                ));
            }
        }
    }

    page.push_str("<h2>三、值班签到</h2>");
    match data.rankings.first() {
        Some(r) if !r.sign_in.is_empty() => {
            page.push_str(
                "<table id=\"sign-in\"><thead><tr><th>单位</th><th>应签到班次</th>\
                 <th>按时签到班次</th><th>签到率</th></tr></thead><tbody>",
            );
            for u in &r.sign_in {
                let n = |v: Option<u32>| v.map_or_else(|| "—".to_owned(), |v| v.to_string());
                let _ = write!(
                    page,
                    "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                    escape(&u.unit_name),
                    n(u.sign_in.shifts_scheduled),
                    n(u.sign_in.shifts_signed_in),
                    percent(u.sign_in.sign_in_rate)
                );
            }
            page.push_str("</tbody></table>");
        }
        _ => page.push_str("<p>本期无排班。</p>"),
    }

    page.push_str("<h2>四、热点、难点、焦点问题</h2>");
    if let Some(why) = &data.topics_unavailable {
        let _ = write!(page, "<p>热点分析未能完成：{}</p>", escape(why));
    } else if data.topics.is_empty() {
        page.push_str("<p>本期无工单描述可供分析。</p>");
    } else {
        let bars: Vec<(String, f64)> = data
            .topics
            .iter()
            .take(10)
            .map(|t| (t.topic.clone(), f64::from(t.current)))
            .collect();
        page.push_str(&bar_chart("本期工单数最多的话题", &bars, false));
        page.push_str(
            "<table id=\"topics\"><thead><tr><th>话题</th><th>本期工单</th><th>前8期均值</th>\
             <th>标记</th><th>涉及城市</th></tr></thead><tbody>",
        );
        for t in &data.topics {
            let mut flags = Vec::new();
            if t.hot {
                flags.push("热点");
            }
            if t.difficult {
                flags.push("难点");
            }
            if t.focal {
                flags.push("焦点");
            }
            let _ = write!(
                page,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1}</td><td>{}</td><td>{}</td></tr>",
                escape(&t.topic),
                t.current,
                t.baseline_mean,
                flags.join("、"),
                escape(&t.cities.join("、"))
            );
        }
        page.push_str("</tbody></table>");
    }
    page.push_str("<h2>五、服务质量评查</h2>");
    if data.quality.reviews == 0 {
        page.push_str("<p>本期无已评分的评查。</p>");
    } else {
        let _ = write!(
            page,
            "<p>已评查 {} 件，平均得分 {}。</p><table id=\"quality\"><thead><tr><th>类别</th>\
             <th>对象</th><th>评查件数</th><th>平均得分</th></tr></thead><tbody>",
            data.quality.reviews,
            data.quality
                .score
                .map_or_else(|| "—".to_owned(), |s| format!("{s:.1}"))
        );
        for (what, list) in quality_lists(data) {
            for a in list {
                let _ = write!(
                    page,
                    "<tr><td>{what}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1}</td></tr>",
                    escape(&a.key),
                    a.reviews,
                    a.score
                );
            }
        }
        page.push_str("</tbody></table>");
    }
    page.push_str("</body></html>\n");
    page
}

fn level_key(level: Level) -> &'static str {
    match level {
        Level::Province => "province",
        Level::City => "city",
        Level::County => "county",
        Level::Township => "township",
        Level::Institution => "institution",
    }
}

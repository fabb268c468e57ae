//! Generated sample data for tests, the demo and the bench (`hotline directory seed
//! --count N`): made-up institutions marked （示例）, made-up practitioners, addresses
//! on 示例路, telephone numbers that cannot be dialled (`0531-0000123`: no local number
//! starts with 0) and coordinates scattered around each city's centre. Deterministic
//! for a given seed. One entry in five is an institution; each practitioner belongs
//! to an institution of its kind in the same city. Seeded institutions are handled by
//! their city's bureau (`unit` = the city's unit id): the demo's city users confirm
//! their appointments.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::domain::{DirectoryKind, IntegrityKind, IntegrityRecord, LicenceStatus};
use crate::store::Store;
use crate::store::directory::{ChangeStamp, EntryWrite};

use super::{EntryInput, InputError};

/// Entries written per transaction.
pub const BATCH: usize = 1000;

/// (city id, area code, centre lat, centre lon, districts).
const CITIES: [(&str, &str, f64, f64, [&str; 2]); 16] = [
    ("jinan", "0531", 36.651, 117.120, ["历下区", "市中区"]),
    ("qingdao", "0532", 36.067, 120.383, ["市南区", "崂山区"]),
    ("zibo", "0533", 36.813, 118.055, ["张店区", "淄川区"]),
    ("zaozhuang", "0632", 34.810, 117.323, ["市中区", "薛城区"]),
    ("dongying", "0546", 37.434, 118.675, ["东营区", "河口区"]),
    ("yantai", "0535", 37.464, 121.448, ["芝罘区", "莱山区"]),
    ("weifang", "0536", 36.707, 119.162, ["奎文区", "潍城区"]),
    ("jining", "0537", 35.415, 116.587, ["任城区", "兖州区"]),
    ("taian", "0538", 36.200, 117.087, ["泰山区", "岱岳区"]),
    ("weihai", "0631", 37.513, 122.120, ["环翠区", "文登区"]),
    ("rizhao", "0633", 35.417, 119.527, ["东港区", "岚山区"]),
    ("linyi", "0539", 35.104, 118.356, ["兰山区", "罗庄区"]),
    ("dezhou", "0534", 37.435, 116.359, ["德城区", "陵城区"]),
    ("liaocheng", "0635", 36.457, 115.985, ["东昌府区", "茌平区"]),
    ("binzhou", "0543", 37.382, 117.971, ["滨城区", "沾化区"]),
    ("heze", "0530", 35.233, 115.481, ["牡丹区", "定陶区"]),
];

const TRADE_WORDS: [&str; 24] = [
    "明信", "正和", "德衡", "公平", "诚远", "立本", "恒信", "厚德", "安平", "海岱", "泉城", "齐鲁",
    "泰和", "弘正", "致远", "同心", "明理", "守正", "天衡", "诚和", "信达", "宏法", "鼎正", "和睦",
];

const SURNAMES: [&str; 24] = [
    "王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗", "郑", "梁", "宋", "谢",
];

const GIVEN: [&str; 32] = [
    "明", "华", "静", "丽", "强", "军", "伟", "芳", "敏", "磊", "洋", "艳", "勇", "杰", "娟", "涛",
    "超", "霞", "平", "刚", "桂", "英", "文", "建", "国", "玉", "兰", "海", "云", "鹏", "宁", "晨",
];

fn specialties(kind: DirectoryKind) -> &'static [&'static str] {
    match kind {
        DirectoryKind::LawFirm | DirectoryKind::Lawyer => &[
            "婚姻家庭",
            "劳动争议",
            "合同纠纷",
            "交通事故",
            "房产纠纷",
            "刑事辩护",
            "公司法务",
            "知识产权",
            "债权债务",
            "继承纠纷",
            "行政诉讼",
            "医疗纠纷",
        ],
        DirectoryKind::NotaryOffice | DirectoryKind::Notary => &[
            "遗嘱公证",
            "继承公证",
            "委托公证",
            "出国公证",
            "学历公证",
            "合同公证",
            "保全证据公证",
            "赠与公证",
        ],
        DirectoryKind::AppraisalInstitution | DirectoryKind::Appraiser => &[
            "法医临床鉴定",
            "法医病理鉴定",
            "文书鉴定",
            "痕迹鉴定",
            "声像资料鉴定",
            "司法会计鉴定",
            "交通事故鉴定",
        ],
        DirectoryKind::MediationCommittee | DirectoryKind::Mediator => &[
            "邻里纠纷",
            "婚姻家庭",
            "物业纠纷",
            "劳动争议",
            "交通事故",
            "医疗纠纷",
        ],
        DirectoryKind::LegalAidCentre => &[
            "法律援助申请",
            "农民工讨薪",
            "残疾人维权",
            "未成年人保护",
            "老年人维权",
        ],
        DirectoryKind::GrassrootsOffice | DirectoryKind::GrassrootsWorker => {
            &["法律咨询", "代写文书", "民事代理", "调解纠纷"]
        }
        DirectoryKind::ServiceCentre => &[
            "法律咨询",
            "法律援助申请",
            "公证咨询",
            "人民调解",
            "法治宣传",
        ],
    }
}

/// One generated entry; `parent` indexes the institution it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub input: EntryInput,
    pub parent: Option<usize>,
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn institution_kind(rng: &mut StdRng) -> DirectoryKind {
    let n = rng.random_range(0..100);
    match n {
        0..35 => DirectoryKind::LawFirm,
        35..45 => DirectoryKind::NotaryOffice,
        45..50 => DirectoryKind::LegalAidCentre,
        50..58 => DirectoryKind::AppraisalInstitution,
        58..83 => DirectoryKind::MediationCommittee,
        83..95 => DirectoryKind::GrassrootsOffice,
        _ => DirectoryKind::ServiceCentre,
    }
}

fn practitioner_kind(institution: DirectoryKind) -> Option<DirectoryKind> {
    match institution {
        DirectoryKind::LawFirm => Some(DirectoryKind::Lawyer),
        DirectoryKind::NotaryOffice => Some(DirectoryKind::Notary),
        DirectoryKind::AppraisalInstitution => Some(DirectoryKind::Appraiser),
        DirectoryKind::MediationCommittee => Some(DirectoryKind::Mediator),
        DirectoryKind::GrassrootsOffice => Some(DirectoryKind::GrassrootsWorker),
        _ => None,
    }
}

fn licence(rng: &mut StdRng) -> LicenceStatus {
    match rng.random_range(0..100) {
        0..95 => LicenceStatus::Active,
        95..98 => LicenceStatus::Suspended,
        98 => LicenceStatus::Cancelled,
        _ => LicenceStatus::Revoked,
    }
}

fn records(rng: &mut StdRng, city_name: &str) -> Vec<IntegrityRecord> {
    let mut out = Vec::new();
    let date = |rng: &mut StdRng| {
        chrono::NaiveDate::from_ymd_opt(
            rng.random_range(2019..=2026),
            rng.random_range(1..=12),
            rng.random_range(1..=28),
        )
        .unwrap_or_default()
    };
    if rng.random_range(0..100) < 20 {
        out.push(IntegrityRecord {
            kind: IntegrityKind::Commendation,
            date: date(rng),
            text: pick(
                rng,
                &["年度优秀", "先进集体", "优秀法律服务工作者", "群众满意窗口"],
            )
            .to_string(),
            authority: format!("{city_name}司法局"),
        });
    }
    if rng.random_range(0..100) < 5 {
        out.push(IntegrityRecord {
            kind: IntegrityKind::Penalty,
            date: date(rng),
            text: pick(rng, &["警告", "通报批评", "停止执业三个月", "罚款"]).to_string(),
            authority: format!("{city_name}司法局"),
        });
    }
    out
}

fn specialty_list(rng: &mut StdRng, kind: DirectoryKind) -> Vec<String> {
    let all = specialties(kind);
    let n = rng.random_range(1..=3.min(all.len()));
    let mut out: Vec<String> = Vec::with_capacity(n);
    while out.len() < n {
        let s = (*pick(rng, all)).to_owned();
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// `count` generated entries (institutions first within each group of five).
#[must_use]
pub fn generate(count: usize, seed: u64) -> Vec<Generated> {
    let mut rng = StdRng::seed_from_u64(seed);
    let institutions = count.div_ceil(5).max(usize::from(count > 0));
    let mut out: Vec<Generated> = Vec::with_capacity(count);
    for i in 0..institutions.min(count) {
        let (city, area, lat, lon, districts) = CITIES[i % CITIES.len()];
        let city_name = super::city_name(city).unwrap_or(city);
        let stem = city_name.trim_end_matches('市');
        let county = *pick(&mut rng, &districts);
        let kind = if i < CITIES.len() {
            // Every city gets a notary office first (the demo looks one up).
            DirectoryKind::NotaryOffice
        } else {
            institution_kind(&mut rng)
        };
        let trade = *pick(&mut rng, &TRADE_WORDS);
        let name = match kind {
            DirectoryKind::LegalAidCentre => format!("{stem}{county}法律援助中心（示例{i}）"),
            DirectoryKind::ServiceCentre => format!("{stem}{county}公共法律服务中心（示例{i}）"),
            DirectoryKind::MediationCommittee => {
                format!("{county}{trade}社区人民调解委员会（示例{i}）")
            }
            DirectoryKind::GrassrootsOffice => format!("{county}{trade}法律服务所（示例{i}）"),
            _ => format!("{stem}{trade}{}（示例{i}）", kind.label()),
        };
        let hours = if rng.random_range(0..4) == 0 {
            "08:30-12:00,14:00-17:30"
        } else {
            "09:00-12:00,13:30-17:30"
        };
        out.push(Generated {
            input: EntryInput {
                kind,
                name,
                city: city.to_owned(),
                county: county.to_owned(),
                address: format!("{city_name}{county}示例路{}号", rng.random_range(1..999)),
                lat: Some(lat + rng.random_range(-0.15..0.15)),
                lon: Some(lon + rng.random_range(-0.15..0.15)),
                phone: format!("{area}-0000{:03}", rng.random_range(0..1000)),
                service_hours: hours.to_owned(),
                specialties: specialty_list(&mut rng, kind),
                licence_no: format!("3{:016}", rng.random_range(0..10_000_000_000_000_000u64)),
                licence_status: licence(&mut rng),
                institution_id: None,
                unit: Some(city.to_owned()),
                integrity: records(&mut rng, city_name),
                intro: format!("示例数据：{}，非真实机构。", kind.label()),
            },
            parent: None,
        });
    }
    let with_staff: Vec<usize> = (0..out.len())
        .filter(|&i| practitioner_kind(out[i].input.kind).is_some())
        .collect();
    if with_staff.is_empty() {
        return out;
    }
    while out.len() < count {
        let parent = *pick(&mut rng, &with_staff);
        let inst = out[parent].input.clone();
        let kind = practitioner_kind(inst.kind).unwrap_or(DirectoryKind::Lawyer);
        let name = format!(
            "{}{}{}",
            pick(&mut rng, &SURNAMES),
            pick(&mut rng, &GIVEN),
            if rng.random_range(0..2) == 0 {
                *pick(&mut rng, &GIVEN)
            } else {
                ""
            }
        );
        let city_name = super::city_name(&inst.city).unwrap_or_default().to_owned();
        out.push(Generated {
            input: EntryInput {
                kind,
                name,
                city: inst.city.clone(),
                county: inst.county.clone(),
                address: inst.address.clone(),
                lat: inst.lat,
                lon: inst.lon,
                phone: inst.phone.clone(),
                service_hours: String::new(),
                specialties: specialty_list(&mut rng, kind),
                licence_no: format!("1{:016}", rng.random_range(0..10_000_000_000_000_000u64)),
                licence_status: licence(&mut rng),
                institution_id: None,
                unit: None,
                integrity: records(&mut rng, &city_name),
                intro: format!("示例数据：{}，非真实人员。", kind.label()),
            },
            parent: Some(parent),
        });
    }
    out
}

/// Why seeding stopped.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("generated entry {index} is invalid: {source}")]
    Invalid {
        index: usize,
        #[source]
        source: InputError,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Writes `count` generated entries (each logged as `seeded` by `actor`), in
/// transactions of [`BATCH`]; returns their ids.
///
/// # Errors
/// Database errors (the batches written before stay).
pub async fn seed(
    store: &Store,
    count: usize,
    seed: u64,
    actor: &str,
    now_ms: i64,
) -> Result<Vec<i64>, SeedError> {
    let generated = generate(count, seed);
    let mut ids: Vec<i64> = Vec::with_capacity(generated.len());
    let stamp = ChangeStamp {
        actor,
        at_ms: now_ms,
        action: "seeded",
    };
    for (start, chunk) in (0..).step_by(BATCH).zip(generated.chunks(BATCH)) {
        let mut batch: Vec<(EntryWrite, String)> = Vec::with_capacity(chunk.len());
        for (offset, g) in chunk.iter().enumerate() {
            let mut input = g.input.clone();
            input.institution_id = g.parent.and_then(|p| ids.get(p).copied());
            let write = input.checked().map_err(|source| SeedError::Invalid {
                index: start + offset,
                source,
            })?;
            batch.push((write, serde_json::to_string(&input).unwrap_or_default()));
        }
        ids.extend(store.insert_directory_entries(&batch, stamp).await?);
    }
    Ok(ids)
}

//! The two schemas are kept in step: the migrations of `sql/postgres` and of `sql/sqlite`, applied
//! by the stores to fresh databases, must give the same tables, the same columns per table, column
//! types equal under [`TYPES`], the same nullability and the same unique keys (by column set, and
//! whether partial). The databases are introspected (`information_schema` and `pg_index` against
//! SQLite's `pragma_table_info`, `pragma_index_list` and `pragma_index_info`), and every difference
//! is named in the failure.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};

use support::Backend;
use support::stores::{self, StoreUnderTest};

/// PostgreSQL's type (as `information_schema` names it) and the SQLite type that stands for it.
const TYPES: &[(&str, &str, &str)] = &[
    // (PostgreSQL, SQLite, why)
    ("bigint", "INTEGER", "the same 64-bit integer"),
    ("integer", "INTEGER", "SQLite's integers are 64-bit; the values fit"),
    ("boolean", "INTEGER", "0 or 1"),
    ("text", "TEXT", "the same"),
    ("double precision", "REAL", "the same IEEE double"),
    ("timestamp with time zone", "INTEGER", "microseconds since the Unix epoch, UTC"),
    ("uuid", "TEXT", "hyphenated, lower case"),
    ("inet", "TEXT", "the address as text"),
    ("jsonb", "TEXT", "a JSON object as text"),
    ("numeric", "INTEGER", "money: exact integer micro-units (the column's name ends in _micros)"),
];

/// Columns whose SQLite name differs, because it carries its unit: (table, PostgreSQL, SQLite).
const RENAMED: &[(&str, &str, &str)] = &[
    ("payouts", "amount", "amount_micros"),
    ("deposits", "amount", "amount_micros"),
    ("held_postbacks", "amount", "amount_micros"),
    ("event_rollup_hourly", "amount", "amount_micros"),
];

/// One column's type (as its database names it) and nullability.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    ty: String,
    not_null: bool,
}

/// What is compared of a schema, under PostgreSQL's table and column names.
#[derive(Debug, Default)]
struct Schema {
    /// Columns by table and name.
    tables: BTreeMap<String, BTreeMap<String, Column>>,
    /// Unique keys (primary keys included): table, sorted columns, whether partial.
    unique: BTreeSet<(String, Vec<String>, bool)>,
}

async fn postgres_schema(db: &StoreUnderTest) -> Schema {
    let mut schema = Schema::default();
    let columns = db
        .db
        .rows(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
             WHERE table_schema = 'public'",
        )
        .await;
    for row in columns {
        let [table, column, ty, nullable] = texts(&row);
        let column_info = Column { ty, not_null: nullable == "NO" };
        schema.tables.entry(table).or_default().insert(column, column_info);
    }
    let unique = db
        .db
        .rows(
            "SELECT t.relname, i.indpred IS NOT NULL,
                    array_to_string(ARRAY(SELECT a.attname FROM unnest(i.indkey) AS k (attnum)
                                          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum), ',')
             FROM pg_index i
             JOIN pg_class t ON t.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             WHERE n.nspname = 'public' AND i.indisunique",
        )
        .await;
    for row in unique {
        let [table, partial, columns] = texts(&row);
        schema.unique.insert((table, sorted(columns.split(',')), partial == "t"));
    }
    schema
}

async fn sqlite_schema(db: &StoreUnderTest) -> Schema {
    let mut schema = Schema::default();
    let pg_name = |table: &str, column: String| {
        RENAMED.iter().find(|r| r.0 == table && r.2 == column).map_or(column, |r| r.1.to_owned())
    };
    let columns = db
        .db
        .rows(
            "SELECT t.name, c.name, c.type, c.\"notnull\", c.pk, t.wr,
                    (SELECT count(*) FROM pragma_table_info(t.name) k WHERE k.pk > 0)
             FROM pragma_table_list t JOIN pragma_table_info(t.name) c
             WHERE t.schema = 'main' AND t.type = 'table' AND t.name NOT LIKE 'sqlite_%'",
        )
        .await;
    let mut primary_keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in columns {
        let [table, column, ty, not_null, pk, without_rowid, pk_columns] = texts(&row);
        let column = pg_name(&table, column);
        let in_pk = pk != "0";
        // A primary key column is NOT NULL when it is the rowid (a lone INTEGER PRIMARY KEY) or the
        // table is WITHOUT ROWID; otherwise SQLite lets it be NULL unless it says NOT NULL.
        let implied = in_pk && ((ty == "INTEGER" && pk_columns == "1") || without_rowid == "1");
        if in_pk {
            primary_keys.entry(table.clone()).or_default().push(column.clone());
        }
        let column_info = Column { ty, not_null: not_null == "1" || implied };
        schema.tables.entry(table).or_default().insert(column, column_info);
    }
    for (table, columns) in primary_keys {
        schema.unique.insert((table, sorted(columns), false));
    }
    let unique = db
        .db
        .rows(
            "SELECT t.name, l.partial, group_concat(i.name)
             FROM pragma_table_list t JOIN pragma_index_list(t.name) l JOIN pragma_index_info(l.name) i
             WHERE t.schema = 'main' AND t.type = 'table' AND l.\"unique\" = 1 AND l.origin <> 'pk'
             GROUP BY t.name, l.name",
        )
        .await;
    for row in unique {
        let [table, partial, columns] = texts(&row);
        let columns = columns.split(',').map(|column| pg_name(&table, column.to_owned()));
        schema.unique.insert((table.clone(), sorted(columns), partial == "1"));
    }
    schema
}

fn texts<const N: usize>(row: &[Option<String>]) -> [String; N] {
    std::array::from_fn(|i| row[i].clone().unwrap_or_default())
}

fn sorted<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Vec<String> {
    let mut items: Vec<String> = items.into_iter().map(Into::into).collect();
    items.sort();
    items
}

/// Every difference between the schemas, in words.
fn differences(pg: &Schema, lite: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    let tables: BTreeSet<&String> = pg.tables.keys().chain(lite.tables.keys()).collect();
    for table in tables {
        let (Some(pg_columns), Some(lite_columns)) = (pg.tables.get(table), lite.tables.get(table)) else {
            let only = if pg.tables.contains_key(table) { "PostgreSQL" } else { "SQLite" };
            out.push(format!("table {table} exists only on {only}"));
            continue;
        };
        let names: BTreeSet<&String> = pg_columns.keys().chain(lite_columns.keys()).collect();
        for name in names {
            let (Some(pg_column), Some(lite_column)) = (pg_columns.get(name), lite_columns.get(name)) else {
                let only = if pg_columns.contains_key(name) { "PostgreSQL" } else { "SQLite" };
                out.push(format!("column {table}.{name} exists only on {only}"));
                continue;
            };
            match TYPES.iter().find(|t| t.0 == pg_column.ty) {
                None => {
                    out.push(format!("column {table}.{name}: PostgreSQL type {} has no SQLite mapping", pg_column.ty))
                }
                Some(&(pg_type, lite_type, why)) if lite_column.ty != lite_type => out.push(format!(
                    "column {table}.{name}: {pg_type} on PostgreSQL wants {lite_type} on SQLite ({why}), not {}",
                    lite_column.ty
                )),
                Some(_) => {}
            }
            if pg_column.not_null != lite_column.not_null {
                let says = |not_null| if not_null { "NOT NULL" } else { "nullable" };
                out.push(format!(
                    "column {table}.{name} is {} on PostgreSQL but {} on SQLite",
                    says(pg_column.not_null),
                    says(lite_column.not_null)
                ));
            }
        }
    }
    for (table, columns, partial) in pg.unique.symmetric_difference(&lite.unique) {
        let only =
            if pg.unique.contains(&(table.clone(), columns.clone(), *partial)) { "PostgreSQL" } else { "SQLite" };
        let kind = if *partial { "partial unique key" } else { "unique key" };
        out.push(format!("{kind} {table} ({}) exists only on {only}", columns.join(", ")));
    }
    out
}

#[tokio::test]
async fn both_dialects_migrate_to_the_same_schema() {
    let Some(postgres) = stores::postgres().await else { return };
    let sqlite = StoreUnderTest::open(Backend::Sqlite).await;
    let (pg, lite) = (postgres_schema(&postgres).await, sqlite_schema(&sqlite).await);
    assert!(pg.tables.contains_key("offers") && pg.tables.contains_key("schema_migrations"), "{pg:?}");
    assert!(pg.unique.len() > pg.tables.len(), "every table has a key, some more: {:?}", pg.unique);
    let differences = differences(&pg, &lite);
    assert!(
        differences.is_empty(),
        "sql/postgres and sql/sqlite migrate to different schemas:\n  {}",
        differences.join("\n  ")
    );
}

#[test]
fn the_type_mapping_names_each_postgresql_type_once() {
    let names: BTreeSet<&str> = TYPES.iter().map(|t| t.0).collect();
    assert_eq!(names.len(), TYPES.len());
}

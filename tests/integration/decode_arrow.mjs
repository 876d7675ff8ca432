// Decodes Apache Arrow IPC streams with the apache-arrow npm package (tableFromIPC), an
// independent reader of what src/util/arrow.c writes. Arguments: .arrows files. Prints one JSON
// object, keyed by file name without its extension: {"columns":[{"name","type"}],"rows":[...],
// "batches":N}. Types print as int64, float64, bool, utf8, timestamp_us (Timestamp, MICROSECOND,
// UTC) or Arrow's own name for anything else. Int64 and Timestamp values print as decimal
// strings of their raw 64-bit values (JSON numbers would lose bits; apache-arrow's get() turns
// timestamps into milliseconds). Exits 1 with the error when a stream does not decode.
// Installed by scripts/deps.sh (npm ci in tests/); run by tests/integration/test_arrow_writer.py.
import { readFileSync } from "node:fs";
import { basename } from "node:path";

import { tableFromIPC, Type, Precision, TimeUnit } from "apache-arrow";

function typeName(t) {
    if (t.typeId === Type.Int && t.bitWidth === 64 && t.isSigned) return "int64";
    if (t.typeId === Type.Float && t.precision === Precision.DOUBLE) return "float64";
    if (t.typeId === Type.Bool) return "bool";
    if (t.typeId === Type.Utf8) return "utf8";
    if (t.typeId === Type.Timestamp && t.unit === TimeUnit.MICROSECOND && t.timezone === "UTC") {
        return "timestamp_us";
    }
    return String(t);
}

function cell(vec, data, i, type) {
    if (!vec.isValid(i)) return null;
    if (type === "timestamp_us") return data.values[data.offset + i].toString();
    const v = vec.get(i);
    return typeof v === "bigint" ? v.toString() : v;
}

function decode(path) {
    const table = tableFromIPC(readFileSync(path));
    const columns = table.schema.fields.map((f) => ({ name: f.name, type: typeName(f.type) }));
    const rows = [];
    for (const batch of table.batches) {
        for (let i = 0; i < batch.numRows; i++) {
            rows.push(columns.map((c, j) => cell(batch.getChildAt(j), batch.data.children[j], i,
                                                 c.type)));
        }
    }
    if (rows.length !== table.numRows) throw new Error(`${rows.length} rows != ${table.numRows}`);
    return { columns, rows, batches: table.batches.length };
}

const out = {};
try {
    for (const path of process.argv.slice(2)) {
        out[basename(path).replace(/\.arrows$/, "")] = decode(path);
    }
} catch (e) {
    console.error(String(e.stack || e));
    process.exit(1);
}
process.stdout.write(JSON.stringify(out));

// Validates an OpenAPI 3.1 document (a file named as the argument, or standard input):
//  1. against the OpenAPI 3.1 schema, with every $ref resolving
//     (@seriousme/openapi-schema-validator);
//  2. every schema in it (components, parameters, bodies, answers) compiles as JSON Schema
//     2020-12 under Ajv's strict mode: no unknown or misplaced keyword, no unknown format.
// Prints "valid" and exits 0, or prints the errors and exits 1 (2 when it cannot run).
// Installed by scripts/deps.sh (npm ci in tests/); run by tests/integration/test_openapi.py.
import { readFileSync } from "node:fs";

import { Validator } from "@seriousme/openapi-schema-validator";
import Ajv2020 from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";

const addFormats = addFormatsModule.default;
const BASE = "https://annals.invalid/components";

function readInput() {
    return readFileSync(process.argv[2] ?? 0, "utf-8");
}

// The schemas of the document, each with the JSON pointer of where it is.
function* schemasOf(doc) {
    for (const [name, schema] of Object.entries(doc.components?.schemas ?? {})) {
        yield [`#/components/schemas/${name}`, schema];
    }
    for (const [path, ops] of Object.entries(doc.paths ?? {})) {
        for (const [method, op] of Object.entries(ops)) {
            const at = `#/paths/${path.replaceAll("~", "~0").replaceAll("/", "~1")}/${method}`;
            for (const [i, p] of (op.parameters ?? []).entries()) {
                yield [`${at}/parameters/${i}/schema`, p.schema];
            }
            for (const [media, c] of Object.entries(op.requestBody?.content ?? {})) {
                yield [`${at}/requestBody/content/${media}/schema`, c.schema];
            }
            for (const [status, answer] of Object.entries(op.responses ?? {})) {
                for (const [media, c] of Object.entries(answer.content ?? {})) {
                    yield [`${at}/responses/${status}/content/${media}/schema`, c.schema];
                }
            }
        }
    }
}

// A copy of schema whose references to #/components/schemas/X point into BASE#/$defs/X.
function rebase(schema) {
    return JSON.parse(JSON.stringify(schema), (key, value) =>
        key === "$ref" && typeof value === "string" && value.startsWith("#/components/schemas/")
            ? `${BASE}#/$defs/${value.slice("#/components/schemas/".length)}`
            : value);
}

// Errors of compiling every schema of doc under Ajv's strict mode.
function strictErrors(doc) {
    const ajv = new Ajv2020({ strict: true, allowUnionTypes: true, strictRequired: false,
                              allErrors: true });
    addFormats(ajv);
    const errors = [];
    try {
        ajv.addSchema({ $id: BASE, $defs: rebase(doc.components?.schemas ?? {}) });
    } catch (e) {
        return [`components/schemas: ${e.message}`];
    }
    for (const [at, schema] of schemasOf(doc)) {
        if (schema === undefined) {
            errors.push(`${at}: no schema`);
            continue;
        }
        try {
            ajv.compile(rebase(schema));
        } catch (e) {
            errors.push(`${at}: ${e.message}`);
        }
    }
    return errors;
}

async function main() {
    let doc;
    try {
        doc = JSON.parse(readInput());
    } catch (e) {
        console.log(`not JSON: ${e.message}`);
        return 1;
    }
    const result = await new Validator().validate(structuredClone(doc));
    if (!result.valid) {
        console.log("not a valid OpenAPI document:");
        console.log(JSON.stringify(result.errors, null, 2));
        return 1;
    }
    const errors = strictErrors(doc);
    if (errors.length) {
        console.log("schemas that do not compile under Ajv's strict mode:");
        errors.forEach((e) => console.log(`  ${e}`));
        return 1;
    }
    console.log("valid");
    return 0;
}

main().then((rc) => process.exit(rc), (e) => {
    console.log(`validator failed: ${e.stack ?? e}`);
    process.exit(2);
});

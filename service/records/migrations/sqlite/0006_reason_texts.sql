-- The reason texts of each catalog version, once (service/core/texts.py): decision records of payload schema
-- version 4 name their texts document by its sha256 instead of repeating each reason's customer and auditor
-- texts. Content-addressed: the sha256 is of the body as stored, and the records' own hashes cover the sha256
-- they name, so a body changed here no longer matches and reads as missing (never as other words); audit verify
-- checks every body against its sha256 and every record's document. Written in the transaction of the first
-- record that names it; never purged (a few kilobytes per catalog version).
CREATE TABLE reason_texts (
    sha256          TEXT NOT NULL PRIMARY KEY,     -- sha256 of body
    catalog_version TEXT NOT NULL,
    body            TEXT NOT NULL                  -- canonical JSON {"catalog_version", "texts": {code: {...}}}
);

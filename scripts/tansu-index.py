#!/usr/bin/env python3
"""Adds the index Tansu 0.6's SQLite storage lacks, to a broker's database.

Tansu stores each Kafka record header as a row of its `header` table, which has no index; every record a
consumer fetches then scans the whole table, so reading slows down with the square of the data (a 28k-record
topic with 10 headers per record could not be read back at all). An index on (topition, offset_id) makes each
lookup a seek. Tansu creates its tables with `create table if not exists` and never drops indexes, so adding
one is safe; it only ever helps the broker's own join.

Usage: tansu-index.py PATH/TO/tansu.db   (waits up to 15 s for the broker to create its tables)
"""
import sqlite3
import sys
import time

path = sys.argv[1]
deadline = time.time() + 15
while True:
    try:
        db = sqlite3.connect(path, timeout=15)
        if db.execute("select 1 from sqlite_master where type = 'table' and name = 'header'").fetchone():
            db.execute("create index if not exists hookline_header_record on header (topition, offset_id)")
            db.commit()
            break
        db.close()
    except sqlite3.Error as e:
        if time.time() > deadline:
            sys.exit(f"tansu-index: {e}")
    if time.time() > deadline:
        sys.exit(f"tansu-index: {path} has no header table after 15 s")
    time.sleep(0.1)

#!/usr/bin/env node
// Starts s3rver for edgerec's storage tests:
//   node start.js <port> <data-dir> <bucket>
// Prints "ready <port>" on stdout once it accepts requests.
//
// s3rver 3.7 keeps multipart uploads on disk but answers the two calls that
// inspect and cancel them, ListParts (GET ?uploadId) and
// AbortMultipartUpload (DELETE ?uploadId), with 405. A middleware placed in
// front of its router answers them from the same upload directory, in the
// shapes of the S3 API reference, so cancel can be tested end to end.
'use strict';
const path = require('path');
const fs = require('fs');
const S3rver = require('s3rver');

const [port, directory, bucket] = process.argv.slice(2);
if (!port || !directory || !bucket) {
  console.error('usage: start.js <port> <data-dir> <bucket>');
  process.exit(2);
}

const server = new S3rver({
  port: Number(port),
  address: '127.0.0.1',
  directory,
  silent: true,
  vhostBuckets: false,
  configureBuckets: [{ name: bucket }],
});

function s3Error(ctx, status, code, message) {
  ctx.status = status;
  ctx.type = 'application/xml';
  ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code>` +
    `<Message>${message}</Message></Error>`;
}

server.middleware.unshift(async (ctx, next) => {
  const uploadId = ctx.query.uploadId;
  const m = /^\/([^/]+)\/(.+)$/.exec(ctx.path);
  if (!uploadId || !m || !(ctx.method === 'DELETE' || ctx.method === 'GET')) {
    return next();
  }
  if (!/^[0-9a-f]+$/.test(uploadId)) {
    return s3Error(ctx, 400, 'InvalidArgument', 'Malformed uploadId');
  }
  const dir = path.join(server.store.getResourcePath(m[1], undefined, 'uploads'), uploadId);
  if (!fs.existsSync(dir)) {
    return s3Error(ctx, 404, 'NoSuchUpload', 'The specified upload does not exist.');
  }
  if (ctx.method === 'DELETE') {
    fs.rmSync(dir, { recursive: true, force: true });
    ctx.status = 204;
    return;
  }
  const parts = fs.readdirSync(dir)
    .filter(name => /^[0-9]+$/.test(name))
    .map(Number)
    .sort((a, b) => a - b)
    .map(n => {
      const file = path.join(dir, String(n));
      let md5 = '';
      try { md5 = fs.readFileSync(file + '.md5').toString(); } catch (e) { /* part still being written */ }
      return `<Part><PartNumber>${n}</PartNumber><ETag>&quot;${md5}&quot;</ETag>` +
        `<Size>${fs.statSync(file).size}</Size></Part>`;
    });
  ctx.type = 'application/xml';
  ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<ListPartsResult><Bucket>${m[1]}</Bucket>` +
    `<UploadId>${uploadId}</UploadId>${parts.join('')}</ListPartsResult>`;
});

server.run().then(({ port: p }) => {
  process.stdout.write(`ready ${p}\n`);
}, err => {
  console.error(`s3rver: ${err.message}`);
  process.exit(1);
});

function stop() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

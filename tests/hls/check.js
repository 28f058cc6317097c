// check.js: parses each HLS playlist given on the command line with hls-parser in strict mode; exits 1 on the
// first that fails (tests/integration/test_transcode.py, test_stream.py). After --growing, a media playlist
// may lack EXT-X-ENDLIST if it is an EVENT playlist (one still being written: test_playable.py).
'use strict';
const fs = require('fs');
const HLS = require('hls-parser');

HLS.setOptions({strictMode: true});
let failed = 0;
let growing = false;
for (const path of process.argv.slice(2)) {
  if (path === '--growing') {
    growing = true;
    continue;
  }
  try {
    const playlist = HLS.parse(fs.readFileSync(path, 'utf8'));
    if (playlist.isMasterPlaylist) {
      if (playlist.variants.length === 0) throw new Error('no variant');
      for (const v of playlist.variants) if (!v.bandwidth || !v.codecs) throw new Error('variant without BANDWIDTH or CODECS');
    } else if (playlist.segments.length === 0 || !(playlist.endlist || (growing && playlist.playlistType === 'EVENT'))) {
      throw new Error('no segments or no EXT-X-ENDLIST');
    }
  } catch (e) {
    console.log(`${path}: ${e.message}`);
    failed = 1;
  }
}
process.exit(failed);

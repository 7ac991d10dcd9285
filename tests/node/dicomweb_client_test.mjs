// Drives Bastion with the dicomweb-client npm package (the client OHIF and
// other viewers use), through the xhr2 XMLHttpRequest for Node. Prints one
// JSON object with what the server answered; the pytest test checks it.
// Env: BASTION_URL (https://127.0.0.1:PORT), BASTION_TOKEN, BASTION_FILES
// (Part-10 files, ':'-separated), NODE_EXTRA_CA_CERTS (the server's CA).
import fs from 'node:fs';
import XHR2 from 'xhr2';
import dicomweb from 'dicomweb-client';

globalThis.XMLHttpRequest = XHR2;
const { api } = dicomweb;

const client = new api.DICOMwebClient({
  url: process.env.BASTION_URL + '/dicom-web',
  headers: { Authorization: 'Bearer ' + process.env.BASTION_TOKEN },
});
const tag = (obj, t) => (obj[t] && obj[t].Value ? obj[t].Value[0] : undefined);
const toArrayBuffer = (b) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);

const out = { stored: 0, studies: [], series: 0, instances: 0, retrieved: [], metadata: 0, rendered: 0 };
const files = process.env.BASTION_FILES.split(':').filter(Boolean);
await client.storeInstances({ datasets: files.map((f) => toArrayBuffer(fs.readFileSync(f))) });
out.stored = files.length;
const studies = await client.searchForStudies({ queryParams: { PatientID: process.env.BASTION_PATIENT } });
for (const study of studies) {
  const studyInstanceUID = tag(study, '0020000D');
  out.studies.push(studyInstanceUID);
  const series = await client.searchForSeries({ studyInstanceUID });
  out.series += series.length;
  for (const s of series) {
    const seriesInstanceUID = tag(s, '0020000E');
    const instances = await client.searchForInstances({ studyInstanceUID, seriesInstanceUID });
    out.instances += instances.length;
    for (const i of instances) {
      const sopInstanceUID = tag(i, '00080018');
      const ids = { studyInstanceUID, seriesInstanceUID, sopInstanceUID };
      const bytes = new Uint8Array(await client.retrieveInstance(ids));
      const path = process.env.BASTION_OUT + '/' + sopInstanceUID + '.dcm';
      fs.writeFileSync(path, bytes);
      out.retrieved.push(path);
      const meta = await client.retrieveInstanceMetadata(ids);
      if (tag(meta[0], '00080018') === sopInstanceUID) out.metadata += 1;
      const rendered = await client.retrieveInstanceRendered({ ...ids, mediaTypes: [{ mediaType: 'image/png' }] });
      const png = new Uint8Array(Array.isArray(rendered) ? rendered[0] : rendered);  // single parts come as [buffer]
      if (png[0] === 0x89 && png[1] === 0x50) out.rendered += 1;
    }
  }
}
console.log(JSON.stringify(out));

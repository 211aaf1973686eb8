"""The reader's page: plain HTML, inline CSS and a few lines of inline JavaScript (the machine may be offline).

The reader's name lives in the address (``?reader=``), so a reload or a reopened tab resumes where the
store says the reader stands. Text from the server is set with ``textContent``, never parsed as HTML.
Keys: R = real, S = synthetic.
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Reader study</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:16px/1.4 system-ui,sans-serif;margin:0;background:#f4f4f6;color:#222}
 main{max-width:560px;margin:2rem auto;background:#fff;border-radius:10px;padding:1.5rem;
      box-shadow:0 1px 4px #0002;text-align:center}
 h1{font-size:1.2rem;margin:0 0 .8rem} img{width:384px;height:384px;max-width:100%;border-radius:6px;
      background:#ddd;image-rendering:auto} #progress{color:#666;margin:.3rem 0 .8rem}
 button{font-size:1rem;padding:.6rem 1.6rem;margin:.6rem .4rem;border:0;border-radius:6px;cursor:pointer;
      background:#3b5bdb;color:#fff} button:disabled{opacity:.4;cursor:default}
 #answer-synthetic{background:#c2255c} select,input{font-size:1rem;padding:.4rem}
 #error{color:#c92a2a;min-height:1.2em} .hidden{display:none}
</style></head><body><main>
<h1>Real or synthetic?</h1>
<section id="start" class="hidden">
 <p>Enter your reader name (letters, digits, . _ -).</p>
 <form id="start-form"><input id="reader-name" required maxlength="64" autofocus>
 <button id="begin" type="submit">Begin</button></form>
</section>
<section id="reading" class="hidden">
 <div id="progress"></div>
 <img id="image" alt="image to judge">
 <div><label>Diagnosis (optional): <select id="diagnosis"><option value="">— none —</option></select></label></div>
 <div><button id="answer-real" disabled>Real (R)</button><button id="answer-synthetic" disabled>Synthetic (S)</button></div>
</section>
<section id="done" class="hidden"><p id="done-text"></p><p>Your answers are saved. You can close this tab.</p></section>
<p id="error"></p>
</main><script>
const $ = (id) => document.getElementById(id);
const reader = new URLSearchParams(location.search).get("reader");
let current = null;
function show(id){ for (const s of ["start","reading","done"]) $(s).classList.toggle("hidden", s !== id); }
async function call(path, options){
  const reply = await fetch(path, options);
  const body = await reply.json();
  if (!reply.ok) throw new Error(body.error || JSON.stringify(body.detail || body));
  return body;
}
function render(s){
  $("error").textContent = "";
  if (s.done){ show("done"); $("done-text").textContent = `Done: ${s.answered} / ${s.total} images answered, ${s.reader}. Thank you.`; return; }
  show("reading"); current = s.image_id;
  $("progress").textContent = `${s.position} / ${s.total}`;
  for (const b of ["answer-real","answer-synthetic"]) $(b).disabled = true;
  $("diagnosis").value = "";
  $("image").src = `api/image/${encodeURIComponent(s.image_id)}`;
}
$("image").onload = () => { for (const b of ["answer-real","answer-synthetic"]) $(b).disabled = false; };
async function answer(value){
  if (!current || $("answer-real").disabled) return;
  for (const b of ["answer-real","answer-synthetic"]) $(b).disabled = true;
  const body = {reader, image_id: current, call: value, diagnosis: $("diagnosis").value || null};
  try { render(await call("api/answer", {method:"POST", headers:{"Content-Type":"application/json"}, body: JSON.stringify(body)})); }
  catch (e) { $("error").textContent = e.message; for (const b of ["answer-real","answer-synthetic"]) $(b).disabled = false; }
}
$("answer-real").onclick = () => answer("real");
$("answer-synthetic").onclick = () => answer("synthetic");
document.addEventListener("keydown", (e) => { if (["INPUT","SELECT"].includes(e.target.tagName)) return;
  if (e.key === "r") answer("real"); if (e.key === "s") answer("synthetic"); });
$("start-form").onsubmit = (e) => { e.preventDefault();
  location.search = "?reader=" + encodeURIComponent($("reader-name").value.trim()); };
(async () => {
  if (!reader){ show("start"); return; }
  try {
    const study = await call("api/study");
    for (const c of study.classes){ const o = document.createElement("option"); o.value = o.textContent = c; $("diagnosis").append(o); }
    render(await call(`api/next?reader=${encodeURIComponent(reader)}`));
  } catch (e) { $("error").textContent = e.message; }
})();
</script></body></html>
"""

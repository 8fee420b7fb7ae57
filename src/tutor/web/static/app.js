// tutor web: the little the pages need beyond HTML forms and htmx.
// - Ctrl+Enter (Cmd+Enter on a Mac) submits the answer;
// - a draft answer is kept in this browser (localStorage) until its feedback page loads, so a closed tab,
//   a refused form or a stopped server loses nothing typed;
// - the character count says when the graded limit is passed; the submit button says "Grading…".
(function () {
  "use strict";
  var LIMIT = 5000;
  var PREFIX = "tutor-draft:";

  function store(fn) {
    try { return fn(window.localStorage); } catch (e) { return null; } // private mode, storage full
  }

  function setupAnswer() {
    var ta = document.getElementById("answer");
    if (!ta || !ta.form) { return; }
    var form = ta.form;
    var key = PREFIX + ta.getAttribute("data-draft-key");
    var count = document.getElementById("count");
    var meta = document.getElementById("answer-meta");
    if (!ta.value) {
      var draft = store(function (s) { return s.getItem(key); });
      if (draft) { ta.value = draft; }
    }
    function update() {
      if (count) { count.textContent = ta.value.length.toLocaleString("en"); }
      if (meta) { meta.classList.toggle("over", ta.value.length > LIMIT); }
    }
    ta.addEventListener("input", function () {
      store(function (s) { s.setItem(key, ta.value); });
      update();
    });
    update();
    ta.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        form.requestSubmit(document.getElementById("submit"));
      }
    });
    form.addEventListener("submit", function (e) {
      var b = e.submitter;
      if (b && b.id === "submit") {
        // After the browser has read the form: a disabled button in the form data would be dropped.
        window.setTimeout(function () { b.disabled = true; b.textContent = "Grading…"; }, 0);
      }
    });
  }

  function clearSubmittedDraft() {
    var qid = document.body.getAttribute("data-clear-draft");
    if (qid) { store(function (s) { s.removeItem(PREFIX + qid); }); }
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupAnswer();
    clearSubmittedDraft();
  });
  // Back/forward cache: a page restored after submitting must not keep a disabled button.
  window.addEventListener("pageshow", function (e) {
    if (e.persisted) {
      var b = document.getElementById("submit");
      if (b) { b.disabled = false; b.textContent = "Submit answer"; }
    }
  });
})();

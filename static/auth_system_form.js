// Keep the read-only Redirect URL in step with the Name as it is typed.
// The slug rule mirrors portal.services.auth_systems.slugify.
(function () {
  function slugify(name) {
    return name.normalize("NFKD").replace(/[^\x00-\x7F]/g, "").toLowerCase()
      .replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
  }
  document.querySelectorAll("[data-redirect-pattern]").forEach(function (output) {
    var source = document.getElementById(output.getAttribute("data-slug-source"));
    if (!source) return;
    var pattern = output.getAttribute("data-redirect-pattern");
    var update = function () {
      var slug = slugify(source.value);
      output.value = slug ? pattern.replace("__SLUG__", slug) : "";
    };
    source.addEventListener("input", update);
    update();
  });
})();

// Show only the chosen Type's fields (the server ignores the others' values anyway).
(function () {
  var type = document.querySelector("select[name=type]");
  if (!type) return;
  var update = function () {
    document.querySelectorAll("[data-for-type]").forEach(function (part) {
      part.hidden = part.getAttribute("data-for-type") !== type.value;
    });
  };
  type.addEventListener("change", update);
  update();
})();

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

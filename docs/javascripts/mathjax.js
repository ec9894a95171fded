// MathJax 3 configuration for the \( \) and \[ \] spans written by pymdownx.arithmatex (generic mode).
// The renderer itself (tex-svg-full.js, MathJax 3.2.2, Apache-2.0) ships with the site under vendor/mathjax/,
// so every formula renders from file:// and from a server without network access. SVG output needs no web
// fonts, and the full bundle holds every TeX extension, so nothing is loaded at run time.
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true, processEnvironments: true },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex" },
  svg: { fontCache: "global" },
};

"""What finished runs are turned into: the Markdown/CSV tables of ``adaptive report``
(``tables``), a sweep's own figures (``figures``), the paper's Figures 7-9 and 11-13
(``paper_figures``) and its Table 1 and Figures 2, 4, 5, 10 (``robustness``)."""

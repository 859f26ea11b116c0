"""The script ``streamlit run`` executes; everything it draws lives in ``cryptopipe.dashboard.page``."""

from cryptopipe.dashboard.page import main

main()

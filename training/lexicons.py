"""Word lists for slot filling in the variant generator: names of things, not sentences."""

COMPANIES = (
    # DAX, MDAX, SDAX, TecDAX
    "Adidas", "Airbus", "Allianz", "BASF", "Bayer", "Beiersdorf", "BMW", "Brenntag",
    "Commerzbank", "Continental", "Covestro", "Daimler Truck", "Deutsche Bank",
    "Deutsche Börse", "Deutsche Post", "Deutsche Telekom", "DHL", "E.ON", "Fresenius",
    "Hannover Rück", "Heidelberg Materials", "Henkel", "Infineon", "Mercedes-Benz",
    "Merck", "MTU", "Münchener Rück", "Porsche", "Qiagen", "Rheinmetall", "RWE", "SAP",
    "Sartorius", "Siemens", "Siemens Energy", "Siemens Healthineers", "Symrise",
    "Volkswagen", "Vonovia", "Zalando", "Aixtron", "Aurubis", "Bechtle", "Carl Zeiss Meditec",
    "CTS Eventim", "Delivery Hero", "Evotec", "Fraport", "Gerresheimer", "Hella", "Hensoldt",
    "Hugo Boss", "Jenoptik", "K+S", "Kion", "Lanxess", "LEG Immobilien", "Lufthansa",
    "Nemetschek", "Nordex", "Puma", "Rational", "Renk", "Scout24", "Sixt", "Software AG",
    "Südzucker", "Talanx", "TeamViewer", "Thyssenkrupp", "TUI", "United Internet", "Wacker Chemie",
    # international
    "Alibaba", "Alphabet", "Amazon", "AMD", "Apple", "Baidu", "Berkshire Hathaway", "BYD",
    "Coca-Cola", "Exxon Mobil", "Intel", "JD.com", "JPMorgan", "Meta", "Microsoft", "Netflix",
    "Nike", "Nvidia", "Palantir", "PayPal", "Pfizer", "Samsung", "Shell", "Sony", "Tencent",
    "Tesla", "Toyota", "TSMC", "Walmart", "Nestlé", "Novartis", "Roche", "UBS", "Logitech",
    "Voestalpine", "OMV", "Erste Group", "Verbund", "Andritz", "ASML", "Novo Nordisk",
    "Nintendo", "Hitachi", "Xiaomi", "NIO", "Hyundai", "LVMH", "TotalEnergies", "Stellantis",
)  # fmt: skip

FIRST_NAMES = (
    "Anna", "Andreas", "Barbara", "Bernd", "Christian", "Claudia", "Daniel", "Doris", "Elena",
    "Erik", "Fabian", "Franziska", "Georg", "Gabriele", "Hannah", "Heiko", "Ines", "Jan",
    "Jana", "Jörg", "Julia", "Karin", "Klaus", "Lars", "Laura", "Lena", "Lukas", "Maria",
    "Markus", "Martin", "Michael", "Miriam", "Nadine", "Nils", "Oliver", "Petra", "Ralf",
    "Sabine", "Sandra", "Sebastian", "Simone", "Stefan", "Susanne", "Thomas", "Tobias",
    "Ulrike", "Ursula", "Werner", "Wolfgang", "Yvonne", "Matthias", "Katharina", "Florian",
    "Christine", "Reto", "Beat", "Sepp", "Johanna", "Alexander", "Carsten", "Friedrich",
)  # fmt: skip

LAST_NAMES = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
    "Schulz", "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder",
    "Neumann", "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann", "Hartmann", "Lange",
    "Schmitt", "Werner", "Krause", "Meier", "Lehmann", "Huber", "Gruber", "Steiner", "Moser",
    "Brunner", "Keller", "Frei", "Gerber", "Baumann", "Vogel", "Kaiser", "Fuchs", "Berger",
    "Lorenz", "Seidel", "Brandt", "Haas", "Engel", "Winkler", "Albrecht",
)  # fmt: skip

PLACES = (
    "Berlin", "Hamburg", "München", "Köln", "Frankfurt", "Stuttgart", "Düsseldorf", "Leipzig",
    "Dortmund", "Essen", "Bremen", "Dresden", "Hannover", "Nürnberg", "Duisburg", "Bochum",
    "Wuppertal", "Bielefeld", "Bonn", "Münster", "Mannheim", "Karlsruhe", "Augsburg",
    "Wiesbaden", "Mainz", "Kiel", "Rostock", "Erfurt", "Magdeburg", "Potsdam", "Saarbrücken",
    "Freiburg", "Regensburg", "Würzburg", "Ulm", "Heidelberg", "Kassel", "Göttingen",
    "Wien", "Graz", "Linz", "Salzburg", "Innsbruck", "Klagenfurt", "Zürich", "Basel", "Bern",
    "Genf", "Luzern", "St. Gallen", "Winterthur", "Lausanne",
)  # fmt: skip

MONTHS = (
    "Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September",
    "Oktober", "November", "Dezember",
)  # fmt: skip

"""Write nup_utils/qa_benchmark.jsonl: our own small closed-book QA benchmark for notebook 05.

    python scripts/make_qa_benchmark.py

About 500 factual questions written by us from four tables below (chemical elements, capitals of
sovereign states, US state capitals, authors of well-known books), each with answer aliases and a
popularity tier (1 = very well known, 2 = moderately known, 3 = obscure). The tier is our own
judgement by a stated rule per table, not a measured quantity. Contested facts (e.g. capitals
whose status is disputed) are left out; where a country has several official capitals all are
accepted aliases.
"""

import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "nup_utils" / "qa_benchmark.jsonl"

# Z, symbol, name, extra aliases of the name
ELEMENTS = """1 H Hydrogen|2 He Helium|3 Li Lithium|4 Be Beryllium|5 B Boron|6 C Carbon|7 N Nitrogen|8 O Oxygen|
9 F Fluorine|10 Ne Neon|11 Na Sodium|12 Mg Magnesium|13 Al Aluminium,Aluminum|14 Si Silicon|15 P Phosphorus|
16 S Sulfur,Sulphur|17 Cl Chlorine|18 Ar Argon|19 K Potassium|20 Ca Calcium|21 Sc Scandium|22 Ti Titanium|
23 V Vanadium|24 Cr Chromium|25 Mn Manganese|26 Fe Iron|27 Co Cobalt|28 Ni Nickel|29 Cu Copper|30 Zn Zinc|
31 Ga Gallium|32 Ge Germanium|33 As Arsenic|34 Se Selenium|35 Br Bromine|36 Kr Krypton|37 Rb Rubidium|
38 Sr Strontium|39 Y Yttrium|40 Zr Zirconium|41 Nb Niobium|42 Mo Molybdenum|43 Tc Technetium|44 Ru Ruthenium|
45 Rh Rhodium|46 Pd Palladium|47 Ag Silver|48 Cd Cadmium|49 In Indium|50 Sn Tin|51 Sb Antimony|52 Te Tellurium|
53 I Iodine|54 Xe Xenon|55 Cs Caesium,Cesium|56 Ba Barium|57 La Lanthanum|58 Ce Cerium|59 Pr Praseodymium|
60 Nd Neodymium|61 Pm Promethium|62 Sm Samarium|63 Eu Europium|64 Gd Gadolinium|65 Tb Terbium|66 Dy Dysprosium|
67 Ho Holmium|68 Er Erbium|69 Tm Thulium|70 Yb Ytterbium|71 Lu Lutetium|72 Hf Hafnium|73 Ta Tantalum|
74 W Tungsten,Wolfram|75 Re Rhenium|76 Os Osmium|77 Ir Iridium|78 Pt Platinum|79 Au Gold|80 Hg Mercury|
81 Tl Thallium|82 Pb Lead|83 Bi Bismuth|84 Po Polonium|85 At Astatine|86 Rn Radon|87 Fr Francium|88 Ra Radium|
89 Ac Actinium|90 Th Thorium|91 Pa Protactinium|92 U Uranium|93 Np Neptunium|94 Pu Plutonium|95 Am Americium|
96 Cm Curium|97 Bk Berkelium|98 Cf Californium|99 Es Einsteinium|100 Fm Fermium|101 Md Mendelevium|
102 No Nobelium|103 Lr Lawrencium|104 Rf Rutherfordium|105 Db Dubnium|106 Sg Seaborgium|107 Bh Bohrium|
108 Hs Hassium|109 Mt Meitnerium|110 Ds Darmstadtium|111 Rg Roentgenium|112 Cn Copernicium|113 Nh Nihonium|
114 Fl Flerovium|115 Mc Moscovium|116 Lv Livermorium|117 Ts Tennessine|118 Og Oganesson"""
FAMOUS_ELEMENTS = {"Fe", "Cu", "Ag", "Au", "Hg", "Pb", "Sn", "Zn", "Pt", "U", "Ni"}

# country | capital aliases (first = usual English name); tier 1 / tier 3 lists below, others tier 2
CAPITALS = """Afghanistan|Kabul
Albania|Tirana,Tirane
Algeria|Algiers
Andorra|Andorra la Vella
Angola|Luanda
Antigua and Barbuda|Saint John's,St. John's,St John's
Argentina|Buenos Aires
Armenia|Yerevan
Australia|Canberra
Austria|Vienna
Azerbaijan|Baku
the Bahamas|Nassau
Bahrain|Manama
Bangladesh|Dhaka
Barbados|Bridgetown
Belarus|Minsk
Belgium|Brussels
Belize|Belmopan
Benin|Porto-Novo,Porto Novo
Bhutan|Thimphu
Bolivia|Sucre,La Paz
Bosnia and Herzegovina|Sarajevo
Botswana|Gaborone
Brazil|Brasília,Brasilia
Brunei|Bandar Seri Begawan
Bulgaria|Sofia
Burkina Faso|Ouagadougou
Burundi|Gitega,Bujumbura
Cambodia|Phnom Penh
Cameroon|Yaoundé,Yaounde
Canada|Ottawa
Cape Verde|Praia
the Central African Republic|Bangui
Chad|N'Djamena,Ndjamena
Chile|Santiago
China|Beijing,Peking
Colombia|Bogotá,Bogota
the Comoros|Moroni
Costa Rica|San José,San Jose
Croatia|Zagreb
Cuba|Havana,La Habana
Cyprus|Nicosia
the Czech Republic|Prague,Praha
the Democratic Republic of the Congo|Kinshasa
the Republic of the Congo|Brazzaville
Denmark|Copenhagen
Djibouti|Djibouti,Djibouti City
Dominica|Roseau
the Dominican Republic|Santo Domingo
Ecuador|Quito
Egypt|Cairo
El Salvador|San Salvador
Equatorial Guinea|Malabo,Ciudad de la Paz
Eritrea|Asmara
Estonia|Tallinn
Eswatini|Mbabane,Lobamba
Ethiopia|Addis Ababa
Fiji|Suva
Finland|Helsinki
France|Paris
Gabon|Libreville
the Gambia|Banjul
Georgia (the country)|Tbilisi
Germany|Berlin
Ghana|Accra
Greece|Athens
Grenada|St. George's,Saint George's,St George's
Guatemala|Guatemala City
Guinea|Conakry
Guinea-Bissau|Bissau
Guyana|Georgetown
Haiti|Port-au-Prince
Honduras|Tegucigalpa
Hungary|Budapest
Iceland|Reykjavík,Reykjavik
India|New Delhi
Indonesia|Jakarta,Nusantara
Iran|Tehran,Teheran
Iraq|Baghdad
Ireland|Dublin
Italy|Rome
Ivory Coast (Côte d'Ivoire)|Yamoussoukro,Abidjan
Jamaica|Kingston
Japan|Tokyo
Jordan|Amman
Kazakhstan|Astana,Nur-Sultan
Kenya|Nairobi
Kiribati|South Tarawa,Tarawa
Kuwait|Kuwait City
Kyrgyzstan|Bishkek
Laos|Vientiane
Latvia|Riga
Lebanon|Beirut
Lesotho|Maseru
Liberia|Monrovia
Libya|Tripoli
Liechtenstein|Vaduz
Lithuania|Vilnius
Luxembourg|Luxembourg,Luxembourg City
Madagascar|Antananarivo
Malawi|Lilongwe
Malaysia|Kuala Lumpur,Putrajaya
the Maldives|Malé,Male
Mali|Bamako
Malta|Valletta
the Marshall Islands|Majuro
Mauritania|Nouakchott
Mauritius|Port Louis
Mexico|Mexico City
the Federated States of Micronesia|Palikir
Moldova|Chișinău,Chisinau
Monaco|Monaco
Mongolia|Ulaanbaatar,Ulan Bator
Montenegro|Podgorica
Morocco|Rabat
Mozambique|Maputo
Myanmar|Naypyidaw,Nay Pyi Taw,Naypyitaw
Namibia|Windhoek
Nepal|Kathmandu
the Netherlands|Amsterdam
New Zealand|Wellington
Nicaragua|Managua
Niger|Niamey
Nigeria|Abuja
North Korea|Pyongyang
North Macedonia|Skopje
Norway|Oslo
Oman|Muscat
Pakistan|Islamabad
Palau|Ngerulmud
Panama|Panama City
Papua New Guinea|Port Moresby
Paraguay|Asunción,Asuncion
Peru|Lima
the Philippines|Manila
Poland|Warsaw,Warszawa
Portugal|Lisbon,Lisboa
Qatar|Doha
Romania|Bucharest
Russia|Moscow
Rwanda|Kigali
Saint Kitts and Nevis|Basseterre
Saint Lucia|Castries
Saint Vincent and the Grenadines|Kingstown
Samoa|Apia
San Marino|San Marino,City of San Marino
São Tomé and Príncipe|São Tomé,Sao Tome
Saudi Arabia|Riyadh
Senegal|Dakar
Serbia|Belgrade
Seychelles|Victoria
Sierra Leone|Freetown
Singapore|Singapore
Slovakia|Bratislava
Slovenia|Ljubljana
the Solomon Islands|Honiara
Somalia|Mogadishu
South Africa|Pretoria,Cape Town,Bloemfontein
South Korea|Seoul
South Sudan|Juba
Spain|Madrid
Sri Lanka|Sri Jayawardenepura Kotte,Kotte,Colombo
Sudan|Khartoum
Suriname|Paramaribo
Sweden|Stockholm
Switzerland|Bern,Berne
Syria|Damascus
Tajikistan|Dushanbe
Tanzania|Dodoma
Thailand|Bangkok
Timor-Leste (East Timor)|Dili
Togo|Lomé,Lome
Tonga|Nuku'alofa,Nukualofa
Trinidad and Tobago|Port of Spain
Tunisia|Tunis
Turkey|Ankara
Turkmenistan|Ashgabat
Tuvalu|Funafuti
Uganda|Kampala
Ukraine|Kyiv,Kiev
the United Arab Emirates|Abu Dhabi
the United Kingdom|London
the United States|Washington,Washington D.C.
Uruguay|Montevideo
Uzbekistan|Tashkent
Vanuatu|Port Vila
Venezuela|Caracas
Vietnam|Hanoi
Yemen|Sanaa,Sana'a
Zambia|Lusaka
Zimbabwe|Harare"""
TIER1_COUNTRIES = {
    "the United States",
    "the United Kingdom",
    "France",
    "Germany",
    "Italy",
    "Spain",
    "Japan",
    "China",
    "Russia",
    "India",
    "Canada",
    "Australia",
    "Brazil",
    "Mexico",
    "Egypt",
    "Greece",
    "Ireland",
    "Portugal",
    "the Netherlands",
    "Belgium",
    "Sweden",
    "Norway",
    "Denmark",
    "Finland",
    "Poland",
    "Austria",
    "Switzerland",
    "Turkey",
    "Argentina",
    "South Korea",
    "Thailand",
    "Kenya",
    "Nigeria",
    "South Africa",
    "Saudi Arabia",
    "Iran",
    "Iraq",
    "Pakistan",
    "Indonesia",
    "Vietnam",
    "the Philippines",
    "Ukraine",
    "Chile",
    "Peru",
    "Colombia",
    "Cuba",
    "New Zealand",
}
TIER3_COUNTRIES = {
    "Kiribati",
    "Palau",
    "the Marshall Islands",
    "the Federated States of Micronesia",
    "Tuvalu",
    "Tonga",
    "Samoa",
    "Vanuatu",
    "the Solomon Islands",
    "the Comoros",
    "São Tomé and Príncipe",
    "Eswatini",
    "Lesotho",
    "Burkina Faso",
    "Burundi",
    "Eritrea",
    "Djibouti",
    "Equatorial Guinea",
    "Guinea-Bissau",
    "Mauritania",
    "Saint Kitts and Nevis",
    "Saint Lucia",
    "Saint Vincent and the Grenadines",
    "Grenada",
    "Dominica",
    "Antigua and Barbuda",
    "Bhutan",
    "Brunei",
    "Timor-Leste (East Timor)",
    "Turkmenistan",
    "Tajikistan",
    "Kyrgyzstan",
    "Suriname",
    "Belize",
    "Seychelles",
    "the Maldives",
    "Cape Verde",
    "Gabon",
    "the Central African Republic",
    "Chad",
    "Benin",
    "Togo",
    "Malawi",
    "Liechtenstein",
    "Andorra",
    "San Marino",
}

STATES = """Alabama|Montgomery
Alaska|Juneau
Arizona|Phoenix
Arkansas|Little Rock
California|Sacramento
Colorado|Denver
Connecticut|Hartford
Delaware|Dover
Florida|Tallahassee
Georgia|Atlanta
Hawaii|Honolulu
Idaho|Boise
Illinois|Springfield
Indiana|Indianapolis
Iowa|Des Moines
Kansas|Topeka
Kentucky|Frankfort
Louisiana|Baton Rouge
Maine|Augusta
Maryland|Annapolis
Massachusetts|Boston
Michigan|Lansing
Minnesota|Saint Paul,St. Paul,St Paul
Mississippi|Jackson
Missouri|Jefferson City
Montana|Helena
Nebraska|Lincoln
Nevada|Carson City
New Hampshire|Concord
New Jersey|Trenton
New Mexico|Santa Fe
New York|Albany
North Carolina|Raleigh
North Dakota|Bismarck
Ohio|Columbus
Oklahoma|Oklahoma City
Oregon|Salem
Pennsylvania|Harrisburg
Rhode Island|Providence
South Carolina|Columbia
South Dakota|Pierre
Tennessee|Nashville
Texas|Austin
Utah|Salt Lake City
Vermont|Montpelier
Virginia|Richmond
Washington|Olympia
West Virginia|Charleston
Wisconsin|Madison
Wyoming|Cheyenne"""
BIG_STATES = {
    "California",
    "Texas",
    "Florida",
    "New York",
    "Pennsylvania",
    "Illinois",
    "Ohio",
    "Georgia",
    "North Carolina",
    "Michigan",
}

# title | author aliases | tier
BOOKS = """Pride and Prejudice|Jane Austen,Austen|1
Nineteen Eighty-Four (1984)|George Orwell,Orwell,Eric Arthur Blair|1
Moby-Dick|Herman Melville,Melville|1
War and Peace|Leo Tolstoy,Tolstoy,Lev Tolstoy|1
Don Quixote|Miguel de Cervantes,Cervantes|1
Hamlet|William Shakespeare,Shakespeare|1
The Great Gatsby|F. Scott Fitzgerald,Scott Fitzgerald,Fitzgerald|1
To Kill a Mockingbird|Harper Lee|1
Crime and Punishment|Fyodor Dostoevsky,Dostoevsky,Dostoyevsky|1
One Hundred Years of Solitude|Gabriel García Márquez,Gabriel Garcia Marquez,García Márquez,Garcia Marquez,Márquez,Marquez|2
The Odyssey|Homer|1
Frankenstein|Mary Shelley,Mary Wollstonecraft Shelley|1
Dracula|Bram Stoker,Stoker|1
Ulysses (the 1922 novel)|James Joyce,Joyce|2
The Divine Comedy|Dante Alighieri,Dante|1
Les Misérables|Victor Hugo,Hugo|1
Madame Bovary|Gustave Flaubert,Flaubert|2
The Trial (Der Process)|Franz Kafka,Kafka|2
Brave New World|Aldous Huxley,Huxley|2
The Catcher in the Rye|J. D. Salinger,J.D. Salinger,Salinger|2
Jane Eyre|Charlotte Brontë,Charlotte Bronte|2
Wuthering Heights|Emily Brontë,Emily Bronte|2
Great Expectations|Charles Dickens,Dickens|1
The Old Man and the Sea|Ernest Hemingway,Hemingway|1
Anna Karenina|Leo Tolstoy,Tolstoy,Lev Tolstoy|2
Faust|Johann Wolfgang von Goethe,Goethe|2
The Little Prince|Antoine de Saint-Exupéry,Antoine de Saint-Exupery,Saint-Exupéry,Saint-Exupery|2
Things Fall Apart|Chinua Achebe,Achebe|3
Beloved|Toni Morrison,Morrison|2
The Name of the Rose|Umberto Eco,Eco|2"""


def main():
    rows = []
    for item in ELEMENTS.replace("\n", "").split("|"):
        z, sym, names = item.split(" ")
        z, names = int(z), names.split(",")
        tier = 1 if z <= 20 or sym in FAMOUS_ELEMENTS else 2 if z <= 56 else 3
        rows.append(
            {
                "id": f"elem-name-{z}",
                "question": f"Which chemical element has the symbol {sym}?",
                "answers": names,
                "popularity": tier,
                "category": "element-from-symbol",
            }
        )
        rows.append(
            {
                "id": f"elem-z-{z}",
                "question": f"What is the atomic number of {names[0].lower()}?",
                "answers": [str(z)],
                "popularity": tier,
                "category": "atomic-number",
            }
        )
    for line in CAPITALS.splitlines():
        country, caps = line.split("|")
        tier = 1 if country in TIER1_COUNTRIES else 3 if country in TIER3_COUNTRIES else 2
        slug = country.lower().replace(" ", "-").replace("(", "").replace(")", "").replace("'", "")
        rows.append(
            {
                "id": f"capital-{slug}",
                "question": f"What is the capital of {country}?",
                "answers": caps.split(","),
                "popularity": tier,
                "category": "country-capital",
            }
        )
    for line in STATES.splitlines():
        state, caps = line.split("|")
        rows.append(
            {
                "id": f"state-capital-{state.lower().replace(' ', '-')}",
                "question": f"What is the capital of the US state of {state}?",
                "answers": caps.split(","),
                "popularity": 2 if state in BIG_STATES else 3,
                "category": "us-state-capital",
            }
        )
    for i, line in enumerate(BOOKS.splitlines()):
        title, authors, tier = line.split("|")
        kind = "play" if title == "Hamlet" else "epic poem" if title in ("The Odyssey", "The Divine Comedy") else "book"
        rows.append(
            {
                "id": f"author-{i:02d}",
                "question": f"Who wrote the {kind} '{title}'?",
                "answers": authors.split(","),
                "popularity": int(tier),
                "category": "book-author",
            }
        )
    assert len({r["id"] for r in rows}) == len(rows), "duplicate ids"
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {OUT} ({len(rows)} questions)")


if __name__ == "__main__":
    main()
